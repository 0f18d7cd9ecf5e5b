"""The labelled photo set in eval/photos: one folder per ImageNet class, each holding real
photographs shipped inside Python packages, so `scened eval` runs out of the box.

Nothing is downloaded: each photo is read from a file inside an installed wheel (see
requirements.txt; scikit-learn and matplotlib install with --no-deps, only their data files
are read, neither is imported). A photo of at most 300 kB is copied byte for byte; a bigger one
is re-encoded with photos.py's rule (PNG if it fits, else JPEG q≥80, 4:4:4).

Folder names are ImageNet labels, or one of a label's comma-separated synonyms ("missile" names
both "missile" and "projectile, missile": either answer counts). A photo goes in only when a
person would give it that class and its licence allows redistribution.

    /opt/scened-venv/bin/python models/recipe/eval_set.py        # rewrites eval/photos
"""
import importlib.util
import os
import shutil

import numpy as np
from PIL import Image

from photos import FULL_MAX_BYTES, encode_full

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "eval", "photos"))

# (package, file inside it, ImageNet class folder, file name, provenance and licence)
PHOTOS = [
    ("skimage", "data/chelsea.png", "tabby", "chelsea",
     "Chelsea the cat; CC0 by Stefan van der Walt (scikit-image)"),
    ("skimage", "data/coffee.png", "espresso", "coffee",
     "cup of coffee; CC0 by Rachel Michetti (scikit-image)"),
    ("skimage", "data/clock_motion.png", "wall clock", "clock",
     "motion-blurred wall clock, grayscale; public domain, Stefan van der Walt (scikit-image)"),
    ("skimage", "data/camera.png", "tripod", "cameraman",
     "cameraman behind a camera on a tripod, grayscale; CC0 by Lav Varshney (scikit-image)"),
    ("skimage", "data/rocket.jpg", "missile", "rocket",
     "Falcon 9 launch, SpaceX; public domain (scikit-image)"),
    ("sklearn", "datasets/images/china.jpg", "palace", "china",
     "Tower of Buddhist Incense, Summer Palace, Beijing; CC BY 2.0 by danielbuechele "
     "(scikit-learn)"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "military uniform", "grace_hopper",
     "Rear Admiral Grace Hopper in uniform, U.S. Navy photo; public domain (matplotlib)"),
]


def package_dir(name):
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: see models/recipe/requirements.txt")
    return spec.submodule_search_locations[0]


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    for package, rel, folder, stem, _ in PHOTOS:
        src = os.path.join(package_dir(package), rel)
        os.makedirs(os.path.join(OUT, folder), exist_ok=True)
        ext = os.path.splitext(src)[1].lstrip(".")
        if os.path.getsize(src) <= FULL_MAX_BYTES:
            with open(src, "rb") as f:
                data = f.read()
        else:
            with Image.open(src) as im:
                data, ext = encode_full(np.asarray(im.convert("RGB")))
        dst = os.path.join(OUT, folder, f"{stem}.{ext}")
        with open(dst, "wb") as f:
            f.write(data)
        print(f"{dst}: {len(data)} bytes")


if __name__ == "__main__":
    main()
