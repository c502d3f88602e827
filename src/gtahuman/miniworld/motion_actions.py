"""The action library of the mini world: Euler-angle curves of phase with per-subject style.

Every action is a deterministic function `(times, style) -> ActionCurves`; all randomness is
drawn once in `sample_style`, so a seed fixes a clip. Curves are built from sines,
`smootherstep` ramps (C2) and sin^2 bumps (C1), so joint accelerations stay finite; the
limits are applied afterwards by `motion.soft_clip_angles`. Angles are about the (x, y, z)
axes of each joint (see `motion` for the sign conventions they rely on).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gtahuman.miniworld.motion import JOINT, relaxed_standing_angles

TWO_PI = 2.0 * np.pi
SIDES = (("left", 1.0, 0.0), ("right", -1.0, np.pi))  # name, mirror sign, gait phase shift


@dataclass(frozen=True)
class Style:
    """One subject's way of moving; ranges are in `sample_style`."""

    amplitude: float  # scales joint excursions
    cadence: float  # scales step and gesture frequencies
    speed: float  # scales travel speed
    arm_lowering: float  # shoulder angle of the hanging arms, rad
    elbow_bend: float  # resting elbow flexion, rad
    lean: float  # forward torso lean, rad
    phase: float  # start phase of cyclic actions, rad
    active_side: str  # arm used by reach and wave
    onset: float  # when one-shot actions start, as a fraction of the first second
    depth: float  # how deep crouch / sit / jump go, 0..1
    reverse: bool  # crouch and sit: stand up instead of going down
    reach_swing: float  # shoulder swing of the reaching arm (larger = higher)
    jump_height: float  # metres
    jump_forward: float  # forward speed during flight, m/s
    turn_angle: float  # signed heading change of `turn`, rad


def sample_style(rng: np.random.Generator) -> Style:
    return Style(
        amplitude=rng.uniform(0.8, 1.2),
        cadence=rng.uniform(0.85, 1.15),
        speed=rng.uniform(0.85, 1.2),
        arm_lowering=rng.uniform(1.1, 1.35),
        elbow_bend=rng.uniform(0.15, 0.5),
        lean=rng.uniform(0.0, 0.12),
        phase=rng.uniform(0.0, TWO_PI),
        active_side=str(rng.choice(["left", "right"])),
        onset=rng.uniform(0.0, 1.0),
        depth=rng.uniform(0.7, 1.0),
        reverse=bool(rng.random() < 0.3),
        reach_swing=rng.uniform(0.9, 2.3),
        jump_height=rng.uniform(0.15, 0.35),
        jump_forward=rng.uniform(0.0, 1.2),
        turn_angle=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5 * np.pi, np.pi)),
    )


@dataclass
class ActionCurves:
    angles: np.ndarray  # (T, 24, 3) about x, y, z; root y excludes the heading
    speed: np.ndarray  # (T,) forward speed along the heading, m/s
    yaw: np.ndarray  # (T,) heading change from the start, rad
    lift: np.ndarray  # (T,) extra root height above the grounded pose (flight), m


def smootherstep(x: np.ndarray) -> np.ndarray:
    """0 -> 1 ramp with zero first and second derivatives at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def bump(x: np.ndarray, start: float, end: float) -> np.ndarray:
    """sin^2 bump: 0 outside [start, end], 1 in the middle, zero slope at both ends."""
    u = (x - start) / (end - start)
    return np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)


def _base(times: np.ndarray, style: Style) -> np.ndarray:
    angles = np.tile(relaxed_standing_angles(), (len(times), 1, 1))
    for side, sign, _ in SIDES:
        angles[:, JOINT[f"{side}_shoulder"], 2] = -sign * style.arm_lowering
        angles[:, JOINT[f"{side}_elbow"], 1] = -sign * style.elbow_bend
    angles[:, JOINT["spine_2"], 0] += style.lean
    return angles


def _add_idle_sway(angles: np.ndarray, times: np.ndarray, style: Style, scale: float = 1.0) -> None:
    """Breathing, weight shift and looking around: the small motion of a standing person."""
    ph, c = style.phase, style.cadence
    angles[:, 0, 2] += scale * 0.03 * np.sin(TWO_PI * 0.22 * c * times + ph)
    angles[:, 0, 0] += scale * 0.02 * np.sin(TWO_PI * 0.17 * times + 2 * ph)
    angles[:, JOINT["spine_1"], 0] += scale * 0.02 * np.sin(TWO_PI * 0.25 * times)
    angles[:, JOINT["neck"], 1] += scale * 0.35 * np.sin(TWO_PI * 0.08 * c * times + ph)
    angles[:, JOINT["head"], 0] += scale * 0.1 * np.sin(TWO_PI * 0.13 * times + 3 * ph)
    for side, sign, _ in SIDES:
        angles[:, JOINT[f"{side}_hip"], 2] += scale * sign * 0.04 * np.sin(TWO_PI * 0.22 * c * times + ph)
        angles[:, JOINT[f"{side}_shoulder"], 0] += scale * 0.05 * np.sin(TWO_PI * 0.3 * times + sign)


def _add_gait(angles: np.ndarray, phase: np.ndarray, *, hip_amp: float, hip_offset: float,
              knee_amp: float, knee_base: float, arm_amp: float, elbow_swing: float,
              twist: float) -> None:
    """Legs and arms of a walking / running cycle (amplitudes may be (T,) envelopes).

    The left thigh swings forward while sin(phase) rises; the knee flexes most in mid-swing
    (phase 0), the ankle half-compensates so the foot stays near level, the arm swings
    against the leg of its side, and the chest counter-twists the pelvis.
    """
    for side, sign, shift in SIDES:
        ph = phase + shift
        hip = -hip_amp * np.sin(ph)
        knee = knee_amp * ((1.0 + np.cos(ph)) / 2.0) ** 2
        angles[:, JOINT[f"{side}_hip"], 0] += hip_offset + hip
        angles[:, JOINT[f"{side}_knee"], 0] += knee_base + knee
        angles[:, JOINT[f"{side}_ankle"], 0] += -0.5 * (hip + knee)
        angles[:, JOINT[f"{side}_shoulder"], 0] += arm_amp * np.sin(ph)
        angles[:, JOINT[f"{side}_elbow"], 1] += -sign * elbow_swing * (1.0 - np.sin(ph)) / 2.0
    angles[:, JOINT["spine_2"], 1] += twist * np.sin(phase)
    angles[:, 0, 1] -= 0.5 * twist * np.sin(phase)


def _curves(angles: np.ndarray, speed=0.0, yaw=0.0, lift=0.0) -> ActionCurves:
    n = len(angles)
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
    return ActionCurves(angles=angles, speed=full(speed), yaw=full(yaw), lift=full(lift))


def _ramp(times: np.ndarray, style: Style, duration: float) -> np.ndarray:
    """One-shot progress 0 -> 1 starting within the first second (reversed if asked)."""
    progress = smootherstep((times - 0.6 * style.onset) / (duration / style.cadence))
    return 1.0 - progress if style.reverse else progress


def walk(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    phase = TWO_PI * 0.9 * style.cadence * times + style.phase
    a = style.amplitude
    _add_gait(angles, phase, hip_amp=0.45 * a, hip_offset=-0.08, knee_amp=0.75 * a, knee_base=0.05,
              arm_amp=0.35 * a, elbow_swing=0.25, twist=0.08 * a)
    return _curves(angles, speed=1.3 * style.speed)


def run(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    phase = TWO_PI * 1.35 * style.cadence * times + style.phase
    a = style.amplitude
    for side, sign, _ in SIDES:
        angles[:, JOINT[f"{side}_elbow"], 1] = -sign * (1.2 + 0.2 * a)
    angles[:, 0, 0] += 0.15 + style.lean
    _add_gait(angles, phase, hip_amp=0.65 * a, hip_offset=-0.3, knee_amp=1.35 * a, knee_base=0.3,
              arm_amp=0.55 * a, elbow_swing=0.2, twist=0.12 * a)
    bounce = 0.04 * (1.0 - np.cos(2.0 * phase)) / 2.0
    return _curves(angles, speed=3.0 * style.speed, lift=bounce)


def reach(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    _add_idle_sway(angles, times, style, scale=0.5)
    p = smootherstep((times - 0.6 * style.onset) / (0.9 / style.cadence))
    sign = 1.0 if style.active_side == "left" else -1.0
    side = style.active_side
    angles[:, JOINT[f"{side}_shoulder"], 0] += -style.reach_swing * p
    angles[:, JOINT[f"{side}_shoulder"], 2] += sign * 0.35 * p  # a little more lateral
    angles[:, JOINT[f"{side}_elbow"], 1] = -sign * (style.elbow_bend * (1.0 - p) + 0.05 * p)
    low = np.clip((1.4 - style.reach_swing) / 0.5, 0.0, 1.0)  # low targets: bend over
    angles[:, JOINT["spine_2"], 0] += p * (0.1 + 0.35 * low)
    for leg in ("left", "right"):
        angles[:, JOINT[f"{leg}_hip"], 0] -= p * 0.25 * low
        angles[:, JOINT[f"{leg}_knee"], 0] += p * 0.3 * low
        angles[:, JOINT[f"{leg}_ankle"], 0] -= p * 0.05 * low
    return _curves(angles)


def _squat(angles: np.ndarray, amount: np.ndarray, *, pitch: float, hip: float, knee: float) -> None:
    """Fold the legs; the ankle makes pitch + hip + knee + ankle = 0 so the feet stay flat."""
    angles[:, 0, 0] += pitch * amount
    for side in ("left", "right"):
        angles[:, JOINT[f"{side}_hip"], 0] += hip * amount
        angles[:, JOINT[f"{side}_knee"], 0] += knee * amount
        angles[:, JOINT[f"{side}_ankle"], 0] -= (pitch + hip + knee) * amount


def crouch(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    _add_idle_sway(angles, times, style, scale=0.4)
    amount = style.depth * _ramp(times, style, duration=1.0)
    _squat(angles, amount, pitch=0.35, hip=-1.9, knee=2.2)
    angles[:, JOINT["spine_2"], 0] += 0.15 * amount
    angles[:, JOINT["neck"], 0] -= 0.35 * amount  # keep looking ahead
    for side, sign, _ in SIDES:
        angles[:, JOINT[f"{side}_shoulder"], 0] -= 0.8 * amount  # arms forward for balance
        angles[:, JOINT[f"{side}_elbow"], 1] -= sign * 0.5 * amount
    return _curves(angles)


def sit(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    _add_idle_sway(angles, times, style, scale=0.6)
    amount = (0.9 + 0.1 * style.depth) * _ramp(times, style, duration=1.2)
    _squat(angles, amount, pitch=0.05, hip=-1.55, knee=1.55)
    for side, sign, _ in SIDES:  # hands come to rest on the thighs
        angles[:, JOINT[f"{side}_shoulder"], 0] -= 0.55 * amount
        angles[:, JOINT[f"{side}_elbow"], 1] -= sign * 0.8 * amount
    return _curves(angles)


def wave(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    _add_idle_sway(angles, times, style, scale=0.5)
    p = smootherstep((times - 0.4 * style.onset) / (0.7 / style.cadence))
    sign = 1.0 if style.active_side == "left" else -1.0
    side = style.active_side
    # Upper arm forward and up, forearm up (elbow flexion), hand swept sideways.
    waving = 0.3 * style.amplitude * np.sin(TWO_PI * 2.0 * style.cadence * times + style.phase)
    angles[:, JOINT[f"{side}_shoulder"], 0] += -(1.5 + 0.2 * style.depth) * p
    angles[:, JOINT[f"{side}_shoulder"], 2] += sign * p * (0.45 + waving)
    angles[:, JOINT[f"{side}_elbow"], 1] = -sign * (style.elbow_bend + p * (1.5 - style.elbow_bend))
    return _curves(angles)


def jump(times: np.ndarray, style: Style) -> ActionCurves:
    """Repeated vertical / forward jumps: crouch, flight (sin^2 lift), landing crouch."""
    angles = _base(times, style)
    period = 1.4 / style.cadence
    u = ((times / period) + style.phase / TWO_PI) % 1.0
    crouch_amount = style.depth * (bump(u, 0.02, 0.38) + 0.8 * bump(u, 0.62, 0.98))
    flight = bump(u, 0.3, 0.72)
    _squat(angles, crouch_amount, pitch=0.3, hip=-1.3, knee=1.7)
    for side, _, _ in SIDES:
        angles[:, JOINT[f"{side}_ankle"], 0] += 0.3 * flight  # toes point in the air
        angles[:, JOINT[f"{side}_shoulder"], 0] += 0.5 * bump(u, 0.02, 0.3) - 1.6 * flight
    return _curves(angles, speed=style.jump_forward * flight, lift=style.jump_height * flight)


def turn(times: np.ndarray, style: Style) -> ActionCurves:
    """Turn on the spot by `turn_angle`, with small steps while the heading changes."""
    angles = _base(times, style)
    _add_idle_sway(angles, times, style, scale=0.3)
    duration = (0.8 + 0.6 * abs(style.turn_angle) / np.pi) / style.cadence
    u = (times - 0.5 * style.onset) / duration
    stepping = bump(u, 0.0, 1.0)
    phase = TWO_PI * 1.1 * style.cadence * times + style.phase
    _add_gait(angles, phase, hip_amp=0.25 * stepping, hip_offset=0.0, knee_amp=0.6 * stepping,
              knee_base=0.0, arm_amp=0.1 * stepping, elbow_swing=0.0, twist=0.0)
    angles[:, JOINT["neck"], 1] += 0.3 * np.sign(style.turn_angle) * stepping  # look into the turn
    return _curves(angles, speed=0.25 * stepping, yaw=style.turn_angle * smootherstep(u))


def idle(times: np.ndarray, style: Style) -> ActionCurves:
    angles = _base(times, style)
    _add_idle_sway(angles, times, style, scale=style.amplitude)
    return _curves(angles)


ACTION_FUNCTIONS: dict[str, Callable[[np.ndarray, Style], ActionCurves]] = {
    "walk": walk, "run": run, "reach": reach, "crouch": crouch, "sit": sit,
    "wave": wave, "jump": jump, "turn": turn, "idle": idle,
}
