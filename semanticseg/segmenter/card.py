"""The segmenter's model card (README.md in the model folder), rendered from cards/segmenter_card.md.j2."""

from __future__ import annotations

import json
from pathlib import Path

from semanticseg.io import atomic_path
from semanticseg.paths import package_data

TEMPLATE = "cards/segmenter_card.md.j2"


def write_card(model_dir: str | Path, results_md: str | Path | None = None) -> Path:
    """Render the card from the model's config.json, training.json and (if given) evaluation results.md."""
    import jinja2

    model_dir = Path(model_dir)
    training = json.loads((model_dir / "training.json").read_text()) if (model_dir / "training.json").exists() else {}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(package_data(TEMPLATE).parent)),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    text = env.get_template(Path(TEMPLATE).name).render(
        config=json.loads((model_dir / "config.json").read_text()),
        training=training,
        evaluation=Path(results_md).read_text() if results_md else "",
    )
    card = model_dir / "README.md"
    with atomic_path(card) as tmp:
        tmp.write_text(text)
    return card
