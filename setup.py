"""Package layout that pyproject.toml cannot say: the repository's top-level `model_cards/` (the templates' one source)
is installed as the package `hf_bort/model_cards/`, so a wheel carries the templates `hf_bort.hub` reads."""

from setuptools import find_packages, setup


setup(
    packages=[*find_packages(include=["hf_bort", "hf_bort.*"]), "hf_bort.model_cards"],
    package_dir={"hf_bort.model_cards": "model_cards"},
    package_data={"hf_bort.model_cards": ["*.md"], "hf_bort.metrics": ["*.py"]},
)
