"""Build and install megabio: `pip install --no-build-isolation -e .` (torch must be installed first)."""

from setuptools import find_packages, setup

setup(
    name="megabio",
    version="0.1.0",
    description="Megatron-style tensor-parallel training of biomedical BERT encoders",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["megabio", "megabio.*"]),
    install_requires=["torch>=2.1", "numpy"],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.4", "transformers>=4.40"],
    },
    entry_points={"console_scripts": ["megabio=megabio.cli:main"]},
)
