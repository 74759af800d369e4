"""The sample styles bundled with the add-on (no bpy): famous public-domain paintings, so a new user gets a
stylized render on the first F12 and can try styles before collecting their own. Files and licences:
``sample_styles/`` and its ``LICENSES.md`` (written by ``scripts/make_sample_styles.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "sample_styles"


@dataclass(frozen=True)
class Sample:
    key: str
    title: str
    file: str
    corpus_stem: str  # how the corpus names the source image (scripts/make_sample_styles.py)

    @property
    def path(self) -> Path:
        return FOLDER / self.file


SAMPLES: tuple[Sample, ...] = (
    Sample("great_wave", "Hokusai: The Great Wave off Kanagawa", "hokusai_great_wave.jpg",
           "katsushika_hokusai_the_great_wave_off_kanagawa"),
    Sample("cafe_terrace", "Van Gogh: Café Terrace at Night", "van_gogh_cafe_terrace.jpg", "image_gogh4_background"),
    Sample("night_cafe", "Van Gogh: The Night Café", "van_gogh_night_cafe.jpg", "van_gogh_the_night_cafe"),
    Sample("auvers", "Van Gogh: Village Street in Auvers", "van_gogh_auvers.jpg", "village_street_in_auvers"),
    Sample("composition_viii", "Kandinsky: Composition VIII", "kandinsky_composition_viii.jpg",
           "wassily_kandinsky_composition_viii"),
    Sample("spring", "Arcimboldo: Spring", "arcimboldo_spring.jpg", "giuseppe_arcimboldo_spring"),
    Sample("moulin", "Renoir: Bal du moulin de la Galette", "renoir_moulin_de_la_galette.jpg",
           "renoir_bal_du_moulin_de_la_galette"),
    Sample("summertime", "Cassatt: Summertime", "cassatt_summertime.jpg", "mary_cassatt_summertime"),
)  # fmt: skip
DEFAULT = "great_wave"  # what "Set up AdaIN" puts in its first slot


def by_key(key: str) -> Sample:
    for s in SAMPLES:
        if s.key == key:
            return s
    raise KeyError(f"no sample style {key!r}: use one of {', '.join(s.key for s in SAMPLES)}")
