"""The smear around a cell: pale background with red blood cells, and stain and camera variation.

`draw_background` paints the field a white cell sits on; `stain_and_camera`
turns a drawn picture into a photographed one (stain strength and hue, defocus
blur, sensor noise), drawn from the same distribution for every class.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from utils.synthetic.drawing import GRID_X, GRID_Y, INPUT_SIZE, blend, soft_alpha

BACKGROUND_COLOUR = np.array([0.955, 0.895, 0.845], dtype=np.float32)
RED_CELL_COLOUR = np.array([0.80, 0.63, 0.67], dtype=np.float32)


def _make_red_cell_sprites() -> list[np.ndarray]:
    """Pre-draws a bank of red blood cell opacity sprites of varied size and shape.

    Drawing every red cell from scratch on the full grid would dominate the
    generation time, so the background pastes sprites from this bank instead.
    Sprites differ in radius, ellipticity, orientation and central pallor.
    """
    sprite_rng = np.random.default_rng(20240607)
    sprites = []
    for radius in np.linspace(8.0, 10.5, 8):
        for _ in range(6):
            half = int(np.ceil(radius)) + 2
            offsets = np.arange(-half, half + 1, dtype=np.float32) + sprite_rng.uniform(-0.5, 0.5)
            local_y, local_x = np.meshgrid(offsets, offsets, indexing="ij")
            angle = sprite_rng.uniform(0.0, np.pi)
            stretch = sprite_rng.uniform(0.82, 1.0)
            along = local_x * np.cos(angle) + local_y * np.sin(angle)
            across = (-local_x * np.sin(angle) + local_y * np.cos(angle)) / stretch
            relative = np.sqrt(along**2 + across**2) / radius
            edge = soft_alpha((1.0 - relative) * radius, 1.0)
            # Red cells are biconcave: the rim takes up more stain than the pale centre.
            pallor_depth = sprite_rng.uniform(0.2, 0.5)
            profile = 1.0 - pallor_depth * np.clip(1.0 - relative / 0.6, 0.0, 1.0) ** 1.5
            sprites.append((edge * profile).astype(np.float32))
    return sprites


RED_CELL_SPRITES = _make_red_cell_sprites()


def draw_background(rng: np.random.Generator) -> np.ndarray:
    """Draws the pale background with pinkish red blood cells scattered over it.

    Red cells sit on a jittered hexagonal lattice with random spacing,
    orientation and gaps, which packs them like a real smear without
    overlapping much; each one is a sprite from `RED_CELL_SPRITES`.
    """
    # Gentle uneven illumination across the field.
    tilt_x, tilt_y, vignette = (float(value) for value in rng.normal(0.0, 0.012, size=3))
    shade = 1.0 + tilt_x * (GRID_X / 48.0 - 1.0) + tilt_y * (GRID_Y / 48.0 - 1.0)
    shade = shade - abs(vignette) * ((GRID_X / 48.0 - 1.0) ** 2 + (GRID_Y / 48.0 - 1.0) ** 2)
    image = BACKGROUND_COLOUR[None, None, :] * shade[..., None]

    spacing = rng.uniform(21.5, 27.0)
    lattice_angle = rng.uniform(0.0, np.pi / 3.0)
    steps = np.arange(-4, 5, dtype=np.float32)
    step_a, step_b = np.meshgrid(steps, steps, indexing="ij")
    lattice_x = (step_a + 0.5 * step_b) * spacing
    lattice_y = step_b * (np.sqrt(3.0) / 2.0) * spacing
    cosine, sine = np.cos(lattice_angle), np.sin(lattice_angle)
    centres_x = 48.0 + rng.uniform(-spacing, spacing) + lattice_x * cosine - lattice_y * sine
    centres_y = 48.0 + rng.uniform(-spacing, spacing) + lattice_x * sine + lattice_y * cosine
    centres_x = centres_x.ravel() + rng.normal(0.0, 0.12 * spacing, size=centres_x.size)
    centres_y = centres_y.ravel() + rng.normal(0.0, 0.12 * spacing, size=centres_y.size)
    present = rng.uniform(size=centres_x.size) > rng.uniform(0.05, 0.35)
    visible = present & (np.abs(centres_x - 48.0) < 60.0) & (np.abs(centres_y - 48.0) < 60.0)
    sprite_choice = rng.integers(0, len(RED_CELL_SPRITES), size=centres_x.size)

    # Paste the sprites into a padded canvas so that cells can hang over the edge.
    margin = 32
    canvas = np.zeros((INPUT_SIZE + 2 * margin, INPUT_SIZE + 2 * margin), dtype=np.float32)
    for centre_x, centre_y, choice in zip(centres_x[visible], centres_y[visible], sprite_choice[visible]):
        sprite = RED_CELL_SPRITES[choice]
        half = sprite.shape[0] // 2
        top = int(round(centre_y)) + margin - half
        left = int(round(centre_x)) + margin - half
        window = canvas[top : top + sprite.shape[0], left : left + sprite.shape[1]]
        np.maximum(window, sprite, out=window)
    opacity = canvas[margin:-margin, margin:-margin] * float(rng.uniform(0.55, 0.8))
    colour = RED_CELL_COLOUR * rng.uniform(0.97, 1.03, size=3).astype(np.float32)
    return blend(image, colour, opacity)


def stain_and_camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Applies stain strength and hue variation, defocus blur and sensor noise.

    The stain variation works on optical densities (the negative logarithm of
    transmitted light), which is how stain concentration changes the colour.
    It is drawn from the same distribution for every class.
    """
    optical_density = -np.log(np.clip(image, 1e-3, 1.0))
    strength = rng.uniform(0.8, 1.2)
    channel_gains = (strength * rng.normal(1.0, 0.09, size=3)).astype(np.float32)
    image = np.exp(-optical_density * channel_gains)
    image = image * float(rng.uniform(0.96, 1.03))
    sigma = float(rng.uniform(0.35, 1.0)) if rng.uniform() < 0.85 else float(rng.uniform(1.0, 1.8))
    image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0.0))
    noise_level = float(rng.uniform(0.006, 0.018))
    image = image + noise_level * rng.standard_normal(size=image.shape, dtype=np.float32)
    return image
