"""What the three mini-world domains look like and how big a world is: data only, plus the
small samplers that draw from it (camera elevations, subjects, clothing colours).

The domains differ the way the paper's data differ:

* ``real_indoor`` (H36M / MPI-INF-3DHP): one studio filmed by four fixed cameras at chest
  height (elevation 0-15 deg), a restricted action set, five subjects (one held out); people
  walk and turn about the room, so they are seen from every side, as in H36M;
* ``gta`` (GTA-Human): streets at any time of day and in any weather, game cameras from a
  wide, realistic elevation distribution (-10..60 deg, most between 0 and 20) that orbit the
  person, all actions, a new pedestrian per (short) sequence with a wider shape spread,
  occluders in front of people;
* ``wild`` (3DPW): outdoor daylight, hand-held moving cameras from a wider band of elevations
  than the studio's (-10..45 deg), portrait frames, subjects and actions partly unseen in
  ``real_indoor``. The keypoint-only real subset (LSP/COCO-like) is drawn in this outdoor
  style too: in-the-wild photos with 2D labels only.

So the wild test's factors (outdoor scenes, high and low cameras, run / jump / wave, new body
shapes) overlap GTA's more than the studio's: the diversity the paper says game data brings.
Orientation diversity matters most: people turn (``turn_rate_deg``) and game cameras orbit
(``orbit_deg_per_s``), so no domain films a person from one side only; a world in which facing
is constant per sequence holds only as many orientations as sequences, and a network trained on
it memorises them (issue 18).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gtahuman.miniworld.motion import ACTIONS

DOMAINS = ("real_indoor", "gta", "wild")
INDOOR_ACTIONS = ("walk", "idle", "reach", "crouch", "sit", "turn")
LOCATION_TAGS = ("downtown", "suburb", "beach", "docks", "hills", "industrial", "park", "highway")


@dataclass(frozen=True)
class ElevationTable:
    """A piecewise-uniform density of camera elevation (degrees): ``weights[i]`` on
    [edges[i], edges[i+1]). Sampled through its inverse CDF so that a world can stratify."""

    edges: tuple[float, ...]
    weights: tuple[float, ...]

    def quantile(self, q: np.ndarray | float) -> np.ndarray:
        cdf = np.concatenate([[0.0], np.cumsum(self.weights)]) / float(np.sum(self.weights))
        return np.interp(q, cdf, self.edges)


@dataclass(frozen=True)
class DomainStyle:
    """How one domain's sequences are staged and filmed."""

    name: str
    image_size: tuple[int, int]  # (W, H) pixels
    fov_deg: float  # vertical field of view
    background: str  # "indoor" or "outdoor"
    actions: tuple[str, ...]
    elevation: ElevationTable
    person_height_px: tuple[float, float]  # drawn per sequence; fixes the camera distance
    beta_sigma: float  # betas ~ N(0, beta_sigma^2)
    moving_camera: bool
    occluder_probability: float = 0.0  # per sequence
    max_occluders: int = 0
    weathers: tuple[str, ...] = ("clear",)
    weather_weights: tuple[float, ...] = (1.0,)
    daytime_hours: tuple[float, float] = (12.0, 12.0)
    vivid_clothes: bool = False
    off_centre: float = 0.0  # lateral aim offset of fixed cameras, as a fraction of half the view width
    turn_rate_deg: float = 0.0  # people change heading at up to this rate (deg/s, drawn per sequence)
    orbit_deg_per_s: float = 0.0  # fixed cameras circle the person at up to this rate (drawn per sequence)
    camera_placements: int = 0  # 0: a camera anywhere; k: one of k fixed placements of one studio (H36M: 4)


REAL_INDOOR = DomainStyle(
    name="real_indoor", image_size=(480, 270), fov_deg=47.0, background="indoor",
    actions=INDOOR_ACTIONS, elevation=ElevationTable((0.0, 15.0), (1.0,)),
    person_height_px=(140.0, 200.0), beta_sigma=0.8, moving_camera=False, turn_rate_deg=120.0,
    camera_placements=4)
GTA = DomainStyle(
    name="gta", image_size=(480, 270), fov_deg=50.0, background="outdoor", actions=ACTIONS,
    elevation=ElevationTable((-10.0, 0.0, 10.0, 20.0, 30.0, 45.0, 60.0), (0.08, 0.30, 0.27, 0.15, 0.12, 0.08)),
    person_height_px=(80.0, 190.0), beta_sigma=1.2, moving_camera=False, occluder_probability=0.5,
    max_occluders=2, weathers=("clear", "clouds", "rain", "fog", "snow"),
    weather_weights=(0.4, 0.25, 0.15, 0.1, 0.1), daytime_hours=(4.0, 23.0),
    vivid_clothes=True, off_centre=0.4, turn_rate_deg=150.0, orbit_deg_per_s=60.0)
WILD = DomainStyle(
    name="wild", image_size=(270, 480), fov_deg=55.0, background="outdoor", actions=ACTIONS,
    elevation=ElevationTable((-10.0, 0.0, 15.0, 30.0, 45.0), (0.15, 0.4, 0.3, 0.15)),
    person_height_px=(170.0, 300.0), beta_sigma=1.0, moving_camera=True,
    weathers=("clear", "clouds"), weather_weights=(0.6, 0.4), daytime_hours=(8.0, 18.0), turn_rate_deg=90.0)
# The keypoint-only real subset: single in-the-wild photos, camera a little higher or lower.
REAL_KEYPOINTS = replace(
    WILD, name="real_kp", image_size=(480, 270), elevation=ElevationTable((-10.0, 0.0, 20.0, 35.0), (0.2, 0.6, 0.2)),
    person_height_px=(130.0, 220.0), moving_camera=False, off_centre=0.2, turn_rate_deg=0.0)
STYLES = {style.name: style for style in (REAL_INDOOR, GTA, WILD, REAL_KEYPOINTS)}


# --- variants: what the GTA domain covers, for controls -----------------------------------------
@dataclass(frozen=True)
class WorldVariant:
    """Which of GTA's two gaps to the studio a world keeps. ``gta_geometry``: "game" (GTA's
    camera heights and orbits, all actions, wide body shapes, people at any distance) or
    "studio" (real_indoor's ranges of all of these). ``gta_appearance``: "game" (streets,
    weather, night, vivid clothes, occluders) or "studio" (real_indoor's rooms, light and
    clothes). Only the GTA domain changes; real_indoor, real_kp and wild are the same bytes in
    every variant (their seed keys do not depend on it)."""

    name: str
    gta_geometry: str = "game"
    gta_appearance: str = "game"
    purpose: str = ""


VARIANTS = {v.name: v for v in (
    WorldVariant("standard", purpose="the default world: GTA covers what the studio lacks"),
    WorldVariant("gta_studio", "studio", "studio",
                 purpose="negative control: GTA restricted to the studio's coverage in geometry and looks"),
    WorldVariant("gta_studio_geometry", "studio", "game",
                 purpose="GTA keeps its looks, loses its geometry: the appearance gap alone"),
    WorldVariant("gta_studio_looks", "game", "studio",
                 purpose="GTA keeps its geometry, loses its looks: the geometry gap alone"),
)}


def gta_style(variant: str = "standard") -> DomainStyle:
    """The GTA domain's style in a world variant (`VARIANTS`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown mini-world variant {variant!r}; choose from {sorted(VARIANTS)}")
    chosen, style = VARIANTS[variant], GTA
    if chosen.gta_geometry == "studio":
        style = replace(style, fov_deg=REAL_INDOOR.fov_deg, actions=REAL_INDOOR.actions,
                        elevation=REAL_INDOOR.elevation, person_height_px=REAL_INDOOR.person_height_px,
                        beta_sigma=REAL_INDOOR.beta_sigma, off_centre=REAL_INDOOR.off_centre,
                        turn_rate_deg=REAL_INDOOR.turn_rate_deg, orbit_deg_per_s=REAL_INDOOR.orbit_deg_per_s)
    if chosen.gta_appearance == "studio":
        style = replace(style, background=REAL_INDOOR.background, weathers=REAL_INDOOR.weathers,
                        weather_weights=REAL_INDOOR.weather_weights, daytime_hours=REAL_INDOOR.daytime_hours,
                        vivid_clothes=REAL_INDOOR.vivid_clothes, occluder_probability=0.0, max_occluders=0)
    return style


@dataclass(frozen=True)
class WorldSize:
    """Counts of one world size. Sequence lengths are drawn from ``frames`` (inclusive);
    ``image_scale`` shrinks every domain's image size (tiny worlds for tests)."""

    name: str
    real_train_sequences: int
    real_val_sequences: int
    real_kp_clips: int
    real_kp_frames: int  # frames per keypoint-only clip (each frame a separate labelled image)
    gta_sequences: int
    wild_test_sequences: int
    wild_val_sequences: int
    wild_new_subjects: int  # wild subjects never seen indoors (plus two indoor subjects)
    frames: tuple[int, int] = (30, 80)
    gta_frames: tuple[int, int] | None = None  # GTA sequence lengths, when not ``frames``
    image_scale: float = 1.0
    real_subjects: int = 5  # the last one is held out for real_indoor_val
    occluders_always: bool = False  # tiny worlds: every gta sequence has occluders (tests need some)


SIZES = {
    "tiny": WorldSize("tiny", real_train_sequences=3, real_val_sequences=1, real_kp_clips=2, real_kp_frames=4,
                      gta_sequences=4, wild_test_sequences=2, wild_val_sequences=1, wild_new_subjects=1,
                      frames=(12, 12), image_scale=0.5, real_subjects=3, occluders_always=True),
    # Many short sequences rather than few long ones: for the same rendering time the training
    # mixture is more diverse and the eval sets average over more subjects, actions and cameras.
    # GTA sequences are shortest: every one brings a new pedestrian, place, weather and camera.
    "default": WorldSize("default", real_train_sequences=96, real_val_sequences=8, real_kp_clips=40,
                         real_kp_frames=8, gta_sequences=320, wild_test_sequences=48, wild_val_sequences=16,
                         wild_new_subjects=6, frames=(10, 16), gta_frames=(5, 7)),
    "large": WorldSize("large", real_train_sequences=100, real_val_sequences=20, real_kp_clips=200,
                       real_kp_frames=8, gta_sequences=600, wild_test_sequences=45, wild_val_sequences=20,
                       wild_new_subjects=12, real_subjects=8, gta_frames=(12, 20)),
}


def scaled_size(style: DomainStyle, scale: float) -> tuple[int, int]:
    """(W, H) of a domain's frames at a world's image scale."""
    width, height = style.image_size
    return max(round(width * scale), 16), max(round(height * scale), 16)


# --- subjects ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subject:
    """One person: shape, gender and clothing (RGB in [0, 1])."""

    name: str
    gender: str  # "male" | "female"
    betas: np.ndarray  # (10,) float32
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    top: tuple[float, float, float]
    bottom: tuple[float, float, float]
    shoes: tuple[float, float, float]
    long_sleeves: bool


_SKINS = ((0.96, 0.80, 0.69), (0.88, 0.67, 0.52), (0.76, 0.55, 0.40), (0.55, 0.38, 0.26), (0.36, 0.24, 0.17))
_HAIRS = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.55, 0.40, 0.22), (0.80, 0.68, 0.45), (0.45, 0.45, 0.45))
_PLAIN = ((0.20, 0.22, 0.28), (0.35, 0.35, 0.38), (0.55, 0.55, 0.55), (0.15, 0.15, 0.17), (0.30, 0.25, 0.22),
          (0.70, 0.70, 0.72), (0.25, 0.30, 0.40))


def _vivid(rng: np.random.Generator) -> tuple[float, float, float]:
    """A saturated colour: random hue, high saturation (game pedestrians dress loudly)."""
    hue = rng.uniform(0.0, 6.0)
    chroma, value = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.95)
    x = chroma * (1 - abs(hue % 2 - 1))
    rgb = [(chroma, x, 0), (x, chroma, 0), (0, chroma, x), (0, x, chroma), (x, 0, chroma), (chroma, 0, x)][int(hue)]
    return tuple(float(value - chroma + c) for c in rgb)  # type: ignore[return-value]


def sample_subject(rng: np.random.Generator, name: str, beta_sigma: float, vivid: bool) -> Subject:
    """A subject with betas ~ N(0, beta_sigma^2), either gender, and clothes of the domain's palette."""
    gender = "male" if rng.random() < 0.5 else "female"
    betas = rng.normal(0.0, beta_sigma, size=10).clip(-3.0, 3.0).astype(np.float32)

    def cloth() -> tuple[float, float, float]:
        if vivid and rng.random() < 0.7:
            return _vivid(rng)
        base = np.array(_PLAIN[int(rng.integers(len(_PLAIN)))]) + rng.normal(0.0, 0.03, 3)
        return tuple(float(c) for c in base.clip(0.0, 1.0))  # type: ignore[return-value]

    pick = lambda table: table[int(rng.integers(len(table)))]
    return Subject(name=name, gender=gender, betas=betas, skin=pick(_SKINS), hair=pick(_HAIRS), top=cloth(),
                   bottom=cloth(), shoes=pick(((0.1, 0.1, 0.1), (0.9, 0.9, 0.9), (0.35, 0.2, 0.1))),
                   long_sleeves=bool(rng.random() < 0.5))


# SMPL joints (whose part a vertex belongs to) -> garment.
_SKIN_PARTS = (12, 15, 20, 21, 22, 23)  # neck, head, wrists, hands
_SLEEVE_PARTS = (18, 19)  # forearms: skin unless long sleeves
_TOP_PARTS = (3, 6, 9, 13, 14, 16, 17)  # spine, collars, upper arms
_BOTTOM_PARTS = (0, 1, 2, 4, 5)  # pelvis, thighs, shins
_SHOE_PARTS = (7, 8, 10, 11)
_FRONT_PANEL_PARTS = (3, 6, 9)  # spine: the chest and belly
_PANEL = (0.92, 0.90, 0.85)


def vertex_colors(subject: Subject, part_labels: np.ndarray, rest_vertices: np.ndarray,
                  rest_joints: np.ndarray) -> np.ndarray:
    """(V, 3) RGB in [0, 1]: garments by body part, hair on the back and top of the head, a
    lighter panel on the front of the top (a shirt front, a zip, a print), a darker band at the
    waist. Real people look different from the front and the back (faces, shirt fronts); at the
    96 px crops of a CPU run the head alone is a few pixels, so the panel keeps the way a person
    faces readable, as it is in real photographs."""
    colors = np.empty((len(part_labels), 3))
    table = {**{p: subject.skin for p in _SKIN_PARTS}, **{p: subject.top for p in _TOP_PARTS},
             **{p: subject.bottom for p in _BOTTOM_PARTS}, **{p: subject.shoes for p in _SHOE_PARTS},
             **{p: (subject.top if subject.long_sleeves else subject.skin) for p in _SLEEVE_PARTS}}
    for part, rgb in table.items():
        colors[part_labels == part] = rgb
    head = rest_joints[15]
    offset = rest_vertices - head
    # Rest frame: y up, the face on +z. Hair: above the eyes, or behind the head's centre.
    hair = (part_labels == 15) & ((offset[:, 1] > 0.06) | (offset[:, 2] < -0.02 + 0.3 * offset[:, 1]))
    colors[hair] = subject.hair
    chest = rest_vertices - rest_joints[9]  # spine_3: the panel is centred on the chest, in front of it
    front = np.isin(part_labels, _FRONT_PANEL_PARTS) & (chest[:, 2] > 0.0)
    colors[front] = 0.25 * np.asarray(subject.top) + 0.75 * np.array(_PANEL)
    waist = (part_labels == 0) & (np.abs(rest_vertices[:, 1] - rest_joints[3, 1]) < 0.03)
    colors[waist] *= 0.6
    return colors
