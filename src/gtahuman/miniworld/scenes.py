"""Procedural backgrounds, lights and occluders of the mini world (numpy, a few ms per image).

Two styles that should differ measurably, as real studio data and game data do:

* indoor (H36M-like): plain low-saturation walls and floor, soft fixed lighting, almost no
  texture;
* outdoor (GTA-like): sky gradient set by the time of day, buildings with windows on the
  horizon, a textured ground, weather (clouds, rain streaks, fog, snow), varied colours and
  a directional sun / moon light that follows the daytime.

Backgrounds are uint8 (H, W, 3) images; lights are `render.Light`s in the camera frame
(y down, so "up" is -y), assuming a roughly level camera.
"""
from __future__ import annotations

import numpy as np

from gtahuman.miniworld.render import Box, Light

WEATHERS: tuple[str, ...] = ("clear", "clouds", "rain", "fog", "snow")
OCCLUDER_KINDS: tuple[str, ...] = ("crate", "pillar", "car", "wall")


def daytime_hours(daytime: float | tuple[int, ...]) -> float:
    """Hours in [0, 24) from a float or GTA-Human's (hour, minute, second) tuple."""
    if isinstance(daytime, (tuple, list)):
        hour, minute, second = (tuple(daytime) + (0, 0))[:3]
        return (hour + minute / 60.0 + second / 3600.0) % 24.0
    return float(daytime) % 24.0


def sun_elevation(hours: float) -> float:
    """Sun elevation in radians: a sine over 06:00-18:00 peaking at 65 deg; negative at night."""
    return np.deg2rad(65.0) * np.sin(np.pi * (hours - 6.0) / 12.0)


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: random grid values bilinearly upsampled by `cell` pixels
    (separable: rows first on the small grid, then columns)."""
    grid = rng.uniform(-1.0, 1.0, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    ys, xs = np.arange(h, dtype=np.float32) / cell, np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = (ys - y0)[:, None], xs - x0
    rows = grid[y0] * (1 - fy) + grid[y0 + 1] * fy  # (h, grid width)
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _pixel_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    """(H, W, 1) grey sensor noise of standard deviation `sigma` (uniform: several times
    cheaper to draw than Gaussian; float32, broadcast over the channels)."""
    return (2.0 * np.sqrt(3.0) * sigma) * (rng.random((h, w, 1), dtype=np.float32) - 0.5)


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def indoor_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A studio: one wall colour, a darker floor below a horizon line, soft light falloff."""
    wall = rng.choice([[168, 162, 150], [140, 140, 138], [175, 170, 160], [120, 118, 112]]).astype(float)
    wall += rng.normal(0.0, 6.0, size=3)
    floor = wall * rng.uniform(0.45, 0.65) + rng.normal(0.0, 4.0, size=3)
    horizon = int(height * rng.uniform(0.6, 0.75))
    ys, xs = np.ogrid[0:height, 0:width]
    # Fixed lights from above: brighter at the top of the wall, gentle vignette.
    vignette = 1.0 - 0.25 * (((xs - width / 2) / width) ** 2 + ((ys - height / 2) / height) ** 2)
    wall_gradient = np.where(ys < horizon, 1.05 - 0.1 * ys / max(horizon, 1), 1.0)
    brightness = (vignette * wall_gradient).astype(np.float32)[..., None]
    image = np.where((ys < horizon)[..., None], wall.astype(np.float32), floor.astype(np.float32)) * brightness
    image[max(horizon - 2, 0):horizon + 1] *= 0.8  # skirting line
    image += 2.0 * _value_noise(rng, height, width, 24)[..., None] + _pixel_noise(rng, height, width, 0.6)
    return _finish(image)


def _sky(hours: float, weather: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(top colour, horizon colour, daylight 0..1) of the sky."""
    elevation = sun_elevation(hours)
    daylight = float(np.clip(np.sin(elevation) / np.sin(np.deg2rad(30)) + 0.15, 0.0, 1.0))
    day_top, day_horizon = np.array([60, 120, 210.0]), np.array([170, 200, 235.0])
    dusk_top, dusk_horizon = np.array([70, 70, 130.0]), np.array([250, 150, 90.0])
    night_top, night_horizon = np.array([6, 8, 22.0]), np.array([28, 32, 55.0])
    dusk = float(np.exp(-((np.rad2deg(elevation) - 3.0) / 10.0) ** 2))
    top = night_top + daylight * (day_top - night_top)
    horizon = night_horizon + daylight * (day_horizon - night_horizon)
    top, horizon = top + dusk * (dusk_top - top), horizon + dusk * (dusk_horizon - horizon)
    if weather in ("clouds", "rain", "snow", "fog"):
        grey = np.mean(horizon) * (0.75 if weather == "rain" else 0.9)
        amount = {"clouds": 0.6, "rain": 0.85, "snow": 0.8, "fog": 0.9}[weather]
        top, horizon = top + amount * (grey - top), horizon + amount * (grey - horizon)
    return top, horizon, daylight


def _buildings(rng: np.random.Generator, image: np.ndarray, horizon: int, daylight: float) -> None:
    """Paint a row of buildings standing on the horizon, windows lit at night."""
    width = image.shape[1]
    x = int(rng.integers(-40, 0))
    while x < width:
        w = int(rng.integers(width // 12, width // 4))
        h = int(rng.uniform(0.15, 0.9) * horizon)
        colour = rng.choice([[150, 140, 130], [120, 70, 60], [90, 110, 130], [200, 190, 170], [70, 75, 80]])
        colour = (colour + rng.normal(0, 12, 3)) * (0.35 + 0.65 * daylight)
        x0, x1, y0 = max(x, 0), min(x + w, width), horizon - h
        image[y0:horizon, x0:x1] = colour
        lit = daylight < 0.3  # windows glow at night, reflect the sky by day
        window = np.array([240, 210, 120.0]) if lit else colour * 0.6 + 40
        step_x, step_y = int(rng.integers(8, 16)), int(rng.integers(10, 18))
        for wy in range(y0 + 4, horizon - 6, step_y):
            for wx in range(x0 + 3, x1 - 5, step_x):
                if not lit or rng.random() < 0.55:
                    image[wy:wy + step_y // 2, wx:wx + step_x // 2] = window
        x += w + int(rng.integers(0, width // 10))


def _rain_streaks(rng: np.random.Generator, image: np.ndarray, count: int, strength: float = 0.6) -> None:
    """Brighten `count` short slanted streaks in place (all at once, no per-streak loop)."""
    height, width = image.shape[:2]
    length = 12
    starts_x, starts_y = rng.integers(0, width, count), rng.integers(0, height, count)
    steps = np.arange(length)
    keep = steps[None, :] < rng.integers(6, length + 1, count)[:, None]  # streak lengths 6-12 px
    ys = np.clip(starts_y[:, None] + steps[None, :], 0, height - 1)[keep]
    xs = np.clip(starts_x[:, None] + steps[None, :] // 3, 0, width - 1)[keep]
    image[ys, xs] = image[ys, xs] * (1.0 - strength) + 140.0 * strength / 0.6


def apply_weather(rng: np.random.Generator, image: np.ndarray, weather: str) -> np.ndarray:
    """Weather over a finished frame (person included): rain streaks, snowflakes, fog veil."""
    if weather not in WEATHERS:
        raise ValueError(f"apply_weather: weather must be one of {WEATHERS}, got {weather!r}")
    out = image.astype(np.float32)
    height, width = out.shape[:2]
    if weather == "rain":
        _rain_streaks(rng, out, count=width * height // 800, strength=0.4)
    elif weather == "snow":
        out[rng.random((height, width)) < 0.005] = 245.0
    elif weather == "fog":
        out += 0.3 * (out.mean() - out)
    return _finish(out)


def outdoor_background(rng: np.random.Generator, width: int, height: int,
                       daytime: float | tuple[int, ...], weather: str) -> np.ndarray:
    """A street: sky by time of day, buildings, textured ground, weather effects."""
    if weather not in WEATHERS:
        raise ValueError(f"outdoor_background: weather must be one of {WEATHERS}, got {weather!r}")
    hours = daytime_hours(daytime)
    top, sky_horizon, daylight = _sky(hours, weather)
    horizon = int(height * rng.uniform(0.35, 0.55))
    t = (np.arange(height)[:, None] / max(horizon, 1)).clip(0, 1)
    image = np.repeat((top + (sky_horizon - top) * t[..., None]).astype(np.float32), width, axis=1)
    if weather == "clouds":
        clouds = np.clip(_value_noise(rng, height, width, 40), 0, None)[..., None]
        image += 60.0 * clouds * (0.3 + 0.7 * daylight)
    _buildings(rng, image, horizon, daylight)
    # Ground: asphalt / grass / dirt with two octaves of noise, coarser near the camera.
    ground = rng.choice([[90, 90, 95], [70, 110, 50], [130, 105, 80], [110, 105, 100]]) + rng.normal(0, 10, 3)
    if weather == "snow":
        ground = np.array([225, 228, 235.0])
    texture = 25.0 * _value_noise(rng, height, width, 6) + 15.0 * _value_noise(rng, height, width, 2)
    shade = (0.3 + 0.7 * daylight) * (0.7 + 0.3 * np.linspace(0, 1, height - horizon))[:, None]
    image[horizon:] = (ground + texture[horizon:, :, None]) * shade[..., None]
    if rng.random() < 0.6 and weather != "snow":  # road markings in perspective
        rows = np.arange(horizon, height)
        centre = width * rng.uniform(0.3, 0.7) + (rows - horizon) * rng.uniform(-1.0, 1.0)
        half = 1 + (rows - horizon) // 25
        for row, c, hw in zip(rows, centre.astype(int), half):
            if (row // 8) % 2 == 0:
                image[row, max(c - hw, 0):max(c + hw, 0)] = 200.0 * (0.3 + 0.7 * daylight)
    image += _pixel_noise(rng, height, width, 4.0)
    if weather == "rain":
        image *= 0.8
        _rain_streaks(rng, image, count=width * height // 400)
    if weather == "snow":
        image[rng.random((height, width)) < 0.01] = 245.0
    if weather == "fog":  # more fog towards the horizon, i.e. with distance
        distance = np.exp(-np.abs(np.arange(height) - horizon) / (0.35 * height)).astype(np.float32)
        fog = np.float32(np.mean(sky_horizon))
        image += (0.3 + 0.5 * distance)[:, None, None] * (fog - image)
    return _finish(image)


def outdoor_light(daytime: float | tuple[int, ...], weather: str, rng: np.random.Generator | None = None) -> Light:
    """Sun (or moon) light: direction from the elevation, warm at dusk, dim and blue at night,
    flat (more ambient, less diffuse) under clouds, rain, fog and snow."""
    hours = daytime_hours(daytime)
    elevation = sun_elevation(hours)
    azimuth = np.pi * (hours - 12.0) / 12.0 + (0.0 if rng is None else rng.normal(0.0, 0.3))
    night = elevation < 0
    altitude = np.deg2rad(35.0) if night else max(elevation, np.deg2rad(5.0))
    direction = (np.sin(azimuth) * np.cos(altitude), -np.sin(altitude), -np.cos(azimuth) * np.cos(altitude))
    if night:
        color, ambient, diffuse = (0.55, 0.6, 0.8), 0.22, 0.35
    else:
        warmth = float(np.exp(-(np.rad2deg(elevation) / 15.0) ** 2))
        color = (1.0, 0.97 - 0.25 * warmth, 0.92 - 0.4 * warmth)
        ambient, diffuse = 0.3, 0.85
    if weather in ("clouds", "rain", "fog", "snow"):
        ambient, diffuse = ambient + 0.15, diffuse * 0.45
    return Light(direction=tuple(float(d) for d in direction), color=color, ambient=ambient, diffuse=diffuse)


def indoor_light(rng: np.random.Generator | None = None) -> Light:
    """Studio lighting: from the front and above, neutral, nearly fixed."""
    jitter = np.zeros(3) if rng is None else rng.normal(0.0, 0.05, 3)
    direction = np.array([0.2, -0.6, -0.75]) + jitter
    return Light(direction=tuple(float(d) for d in direction / np.linalg.norm(direction)),
                 color=(1.0, 0.98, 0.95), ambient=0.45, diffuse=0.6)


_OCCLUDER_SIZES = {  # (lateral, height, depth) ranges in metres
    "crate": ((0.5, 1.0), (0.4, 1.0), (0.5, 1.0)),
    "pillar": ((0.3, 0.5), (2.5, 3.5), (0.3, 0.5)),
    "car": ((4.0, 4.6), (1.3, 1.5), (1.7, 1.9)),
    "wall": ((1.5, 3.0), (0.6, 1.1), (0.15, 0.25)),
}
_OCCLUDER_COLOURS = {
    "crate": [(0.55, 0.4, 0.25), (0.35, 0.45, 0.3)], "pillar": [(0.6, 0.6, 0.58), (0.45, 0.42, 0.4)],
    "car": [(0.7, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.1, 0.1, 0.1)],
    "wall": [(0.65, 0.6, 0.5), (0.5, 0.3, 0.25)],
}


def place_occluders(rng: np.random.Generator, feet_cam: np.ndarray, count: int,
                    kinds: tuple[str, ...] = OCCLUDER_KINDS,
                    up_cam: tuple[float, float, float] = (0.0, -1.0, 0.0)) -> list[Box]:
    """`count` boxes standing on the ground between the camera and the person.

    feet_cam: the ground point under the person, camera frame. Each occluder stands 0.6-3 m
    in front of the person (never closer than 0.5 m to the camera), offset sideways at
    random, turned up to +-0.4 rad about the vertical, so it hides part of the body.
    """
    unknown = set(kinds) - set(OCCLUDER_KINDS)
    if unknown:
        raise ValueError(f"place_occluders: unknown kinds {sorted(unknown)}; choose from {OCCLUDER_KINDS}")
    feet = np.asarray(feet_cam, dtype=np.float64)
    up = np.asarray(up_cam, dtype=np.float64) / np.linalg.norm(up_cam)
    to_camera = -feet - np.dot(-feet, up) * up  # horizontal direction person -> camera
    distance = float(np.linalg.norm(to_camera))
    if distance < 1.5:
        raise ValueError(f"place_occluders: the person is only {distance:.2f} m from the camera; need >= 1.5 m")
    to_camera /= distance
    boxes = []
    for _ in range(count):
        kind = str(rng.choice(kinds))
        size = np.array([rng.uniform(lo, hi) for lo, hi in _OCCLUDER_SIZES[kind]])
        yaw = rng.uniform(-0.4, 0.4)
        toward = np.cos(yaw) * to_camera + np.sin(yaw) * np.cross(up, to_camera)
        lateral = np.cross(up, toward)  # lateral x up = toward: a right-handed box frame
        along = rng.uniform(0.6, max(0.61, min(3.0, distance - 0.5 - size[2])))
        if kind in ("pillar", "crate"):
            # Tall or wide boxes stand to one side with their edge near the line of sight, so
            # they hide part of the person (as in GTA-Human, whose analyser drops frames where
            # the person is hidden entirely), not the whole body.
            offset = (size[0] / 2 + rng.uniform(0.0, 0.35)) * rng.choice([-1.0, 1.0])
        else:
            reach = size[0] / 2 + 0.3 if kind == "car" else 0.6
            offset = rng.uniform(-reach, reach)
        centre = feet + along * to_camera + offset * lateral + 0.5 * size[1] * up
        colour = _OCCLUDER_COLOURS[kind][int(rng.integers(len(_OCCLUDER_COLOURS[kind])))]
        boxes.append(Box(center=tuple(centre), size=tuple(size), rotation=np.column_stack([lateral, up, toward]),
                         color=colour))
    return boxes
