"""What the mini world's domains vary in: views of the body, camera heights, people (issue 18).

A world in which facing is constant per sequence holds one view per sequence and a network
memorises them; the default world must hold many views per domain, the studio must stay narrow
in camera height and people, and the wild test must overlap GTA's camera heights more than the
studio's. Figures come from staging the default plan (motion and camera, no pixels)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gtahuman.miniworld.diversity import circular_span_deg, plan_diversity, summarise
from gtahuman.miniworld.domains import GTA, INDOOR_ACTIONS, REAL_INDOOR, SIZES, gta_style
from gtahuman.miniworld.clips import generate_sequence
from gtahuman.miniworld.plan import Job, plan_world


def test_circular_span_is_the_shortest_arc_holding_every_angle():
    assert circular_span_deg(np.array([350.0, 10.0])) == pytest.approx(20.0)
    assert circular_span_deg(np.array([-170.0, 170.0, 180.0])) == pytest.approx(20.0)
    assert circular_span_deg(np.array([0.0, 90.0, 180.0, 270.0])) == pytest.approx(270.0)
    assert circular_span_deg(np.array([42.0])) == 0.0


def test_summary_counts_views_bins_and_spans_by_hand():
    constant = (np.full(10, 5.0), np.full(10, 100.0))  # one view: azimuth bin 3, elevation bin 0
    turning = (np.array([5.0, 5.0, 15.0, 15.0]), np.array([0.0, 40.0, 80.0, 100.0]))  # bins 0,1,2,3 / 0,0,1,1
    figures = summarise("k", [constant, turning], subjects=2)
    assert figures.sequences == 2 and figures.frames == 14 and figures.subjects == 2
    assert figures.view_cells == 1 + 4  # (seq 1: (3, 0)); seq 2: (0, 0), (1, 0), (2, 1), (3, 1)
    assert figures.azimuth_bins == 4
    assert figures.median_azimuth_span_deg == pytest.approx(50.0)  # median of 0 and 100


def test_people_wander_only_when_asked_and_the_old_clips_are_unchanged():
    plain = generate_sequence("walk", 40, np.random.default_rng(3))
    again = generate_sequence("walk", 40, np.random.default_rng(3), turn_rate=0.0)
    np.testing.assert_array_equal(plain.pose, again.pose)
    wandering = generate_sequence("walk", 40, np.random.default_rng(3), turn_rate=np.deg2rad(150.0))
    np.testing.assert_array_equal(wandering.heading[0], plain.heading[0])  # same start, then it turns
    assert np.ptp(np.unwrap(plain.heading)) < 0.3
    assert np.ptp(np.unwrap(wandering.heading)) > np.ptp(np.unwrap(plain.heading))


@pytest.fixture(scope="module")
def default_figures(toy_body_dir):
    return plan_diversity(plan_world(SIZES["default"], seed=0), toy_body_dir)


def test_default_world_holds_many_views_in_every_training_domain(default_figures):
    real, gta = default_figures["real_train"], default_figures["gta"]
    for figures in (real, gta, default_figures["wild_test"]):
        assert figures.azimuth_bins == 12  # every side of the body
        assert figures.median_azimuth_span_deg >= 8.0  # people turn / cameras orbit within a sequence
        assert figures.view_cells >= 1.4 * figures.sequences  # not one view per sequence
    assert real.view_cells >= 150 and gta.view_cells >= 400  # the world of format 4: 28 and 48
    assert gta.subjects >= 150  # a new pedestrian per sequence


def test_studio_is_narrow_and_the_wild_overlaps_gta_more(default_figures):
    real, gta, wild = default_figures["real_train"], default_figures["gta"], default_figures["wild_test"]
    assert real.subjects <= 5  # H36M-like: few people
    assert -5.0 <= real.elevation_p5_deg and real.elevation_p95_deg <= 20.0  # chest-height cameras
    assert gta.elevation_p95_deg >= 35.0 and wild.elevation_p95_deg >= real.elevation_p95_deg + 15.0
    # the wild test's camera heights above the studio's band are covered by GTA
    assert gta.elevation_p95_deg >= wild.elevation_p95_deg


def test_the_floors_fail_on_a_world_where_facing_is_constant(toy_body_dir):
    """The same plan with people that do not turn and cameras that do not orbit (the world of
    format 4): one view per sequence, so the floors above would fail."""
    jobs = [job for job in plan_world(SIZES["default"], seed=0) if job.kind in ("real_train", "gta")][:60]
    still = [Job(job.kind, replace(job.spec, style=replace(job.spec.style, turn_rate_deg=0.0, orbit_deg_per_s=0.0)))
             for job in jobs]
    for figures in plan_diversity(still, toy_body_dir).values():
        assert figures.median_azimuth_span_deg < 8.0
        assert figures.view_cells < 1.4 * figures.sequences


def test_negative_control_world_keeps_gta_inside_the_studio_coverage(default_figures, toy_body_dir):
    """Variant gta_studio: GTA's camera heights, actions, body shapes and looks are the studio's;
    the other domains are the very same sequences as in the standard world."""
    standard = plan_world(SIZES["default"], seed=0)
    control = plan_world(SIZES["default"], seed=0, variant="gta_studio")
    gta_jobs = [job for job in control if job.kind == "gta"]
    figures = plan_diversity(gta_jobs, toy_body_dir)["gta"]
    real = default_figures["real_train"]
    assert real.elevation_p5_deg - 2.0 <= figures.elevation_p5_deg
    assert figures.elevation_p95_deg <= real.elevation_p95_deg + 2.0
    assert {job.spec.action for job in gta_jobs} <= set(INDOOR_ACTIONS)
    style = gta_jobs[0].spec.style
    assert (style.background, style.vivid_clothes, style.occluder_probability, style.beta_sigma) == \
        ("indoor", False, 0.0, REAL_INDOOR.beta_sigma)
    assert not any(job.spec.with_occluders for job in gta_jobs)
    assert figures.azimuth_bins == 12  # still seen from every side, as in the studio
    others = lambda jobs: [(j.kind, j.spec.seq_name, j.spec.seed_key, j.spec.style) for j in jobs if j.kind != "gta"]
    assert others(standard) == others(control)


def test_partial_variants_change_one_gap_each():
    geometry_only = gta_style("gta_studio_looks")  # keeps GTA's geometry, takes the studio's looks
    looks_only = gta_style("gta_studio_geometry")  # keeps GTA's looks, takes the studio's geometry
    assert geometry_only.elevation == GTA.elevation and geometry_only.background == "indoor"
    assert looks_only.elevation == REAL_INDOOR.elevation and looks_only.background == "outdoor"
    assert looks_only.vivid_clothes and not geometry_only.vivid_clothes
    with pytest.raises(ValueError, match="gta_studio"):
        gta_style("nosuch")
