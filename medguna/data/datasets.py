"""The five MedUnA datasets: names, classes in label order, modality (docs/method.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

from medguna.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    modality: str  # "chest_xray" | "fundus" | "dermoscopy"
    color: str  # how the method reads the images: "L" (grayscale) or "RGB"
    has_official_test: bool
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "shenzhen", ("NORMAL", "TB"), "chest_xray", "L", False,
            "NLM Shenzhen tuberculosis chest X-ray set (662 PNG, CHNCXR_####_#.png)",
        ),
        DatasetSpec(
            "montgomery", ("NORMAL", "TB"), "chest_xray", "L", False,
            "NLM Montgomery County tuberculosis chest X-ray set (138 PNG, MCUCXR_####_#.png)",
        ),
        DatasetSpec(
            "guangzhou", ("NORMAL", "PNEUMONIA"), "chest_xray", "L", True,
            "Kermany et al. 2018 paediatric pneumonia chest X-rays (train/test/{NORMAL,PNEUMONIA})",
        ),
        DatasetSpec(
            "idrid",
            ("Normal", "Stage_1_Retinopathy", "Stage_2_Retinopathy", "Stage_3_Retinopathy",
             "Stage_4_Retinopathy"),
            "fundus", "RGB", True,
            "IDRiD B. Disease Grading colour fundus photographs (grades 0-4)",
        ),
        DatasetSpec(
            "isic2018", ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"), "dermoscopy", "RGB", True,
            "ISIC 2018 Task 3 / HAM10000 dermoscopic images (7 diagnoses)",
        ),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {known}") from None
