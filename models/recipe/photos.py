"""Test photos: real-world photographs bundled in the scikit-image wheel.

Only images whose skimage docstring states CC0 / public domain / no known
copyright restrictions are used (the Middlebury motorcycle pair is skipped:
no licence given; coins and the Hubble deep field were dropped to keep the
golden tensors small, they show nothing ImageNet knows).  Nothing is downloaded: every loader reads a file that
ships inside the wheel.
"""
import io
import os

import numpy as np
from PIL import Image

# name -> (skimage.data file, provenance / licence as stated by skimage)
PHOTOS = {
    "astronaut": ("astronaut.png", "Eileen Collins, NASA Great Images; public domain"),
    "camera": ("camera.png", "cameraman, grayscale; CC0 by Lav Varshney"),
    "chelsea": ("chelsea.png", "Chelsea the cat; CC0 by Stefan van der Walt"),
    "clock": ("clock_motion.png", "motion-blurred wall clock, grayscale; public domain, Stefan van der Walt"),
    "coffee": ("coffee.png", "cup of coffee; CC0 by Rachel Michetti"),
    "rocket": ("rocket.jpg", "Falcon 9 launch, SpaceX; public domain"),
}

FULL_MAX_BYTES = 300_000  # keep each committed full-size photo small


def skimage_data_dir():
    import skimage.data

    return os.path.dirname(skimage.data.__file__)


def load_original(name):
    """The bundled image as RGB uint8 (grayscale replicated to 3 channels)."""
    path = os.path.join(skimage_data_dir(), PHOTOS[name][0])
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def encode_full(rgb):
    """Bytes + extension of the committed full-size photo.

    PNG when it fits the size budget (lossless: every decoder gets the same
    pixels); otherwise JPEG q=92 with 4:4:4 chroma so that decoders differ only
    by IDCT rounding (no chroma-upsampling differences)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    if buf.tell() <= FULL_MAX_BYTES:
        return buf.getvalue(), "png"
    for quality in (92, 88, 84, 80):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
        if buf.tell() <= FULL_MAX_BYTES:
            return buf.getvalue(), "jpg"
    raise ValueError("photo does not fit the size budget")


def center_crop_square(rgb):
    """Largest centred square; the odd pixel (if any) is dropped at the bottom/right."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top:top + s, left:left + s]


def to_model_size(rgb, size):
    """Centre crop to square, then PIL BILINEAR resize to size x size.

    PIL's BILINEAR is a triangle filter whose support widens by the scale
    factor when downsampling (i.e. antialiased), pixel-centre aligned, run as a
    horizontal then a vertical pass with the intermediate rounded to uint8."""
    sq = Image.fromarray(center_crop_square(rgb))
    return np.asarray(sq.resize((size, size), Image.Resampling.BILINEAR))
