"""models/samples/: one real held-out digit per class from scikit-learn's digits (the first of each
label in the held-out split, index % 5 == 0), saved as the 8×8 grey PNG the model sees (white ink on
black, 0..16 scaled to 0..255) — the images the README's examples send. Rerun: `make samples`."""

from pathlib import Path

from PIL import Image

from prelu_deploy.models.data import load_digits

OUT = Path(__file__).resolve().parents[1] / "models" / "samples"


def main() -> None:
    test = load_digits().test
    OUT.mkdir(exist_ok=True)
    for label in range(10):
        i = int((test.labels == label).nonzero()[0][0])
        Image.fromarray(test.images[i, :, :, 0]).save(OUT / f"digit_{label}.png", optimize=True)
    print(f"wrote 10 samples to {OUT}")


if __name__ == "__main__":
    main()
