"""Installs the PPM repository: the `ppm` library and the `beam_jobs` pipelines.

The pins are compatible ranges of one set that resolves and imports together on Python 3.11
(TensorFlow 2.20 family, Keras 3.15 for keras-hub, tf-keras 2.20 for the ranking side, Beam
2.77). Widen them only together: TF, tf-keras, tensorflow-text, tf-models-official and
tensorflow-serving-api must share a minor version.
"""

import setuptools

INSTALL_REQUIRES = [
    "tensorflow~=2.20.0",
    "tf-keras~=2.20.0",
    "tensorflow-text~=2.20.0",
    "tf-models-official~=2.20.0",
    "tensorflow-serving-api~=2.20.0",
    "tensorflow-recommenders~=0.7.7",
    "keras~=3.15.0",
    "keras-hub~=0.32.0",
    "safetensors>=0.4",  # keras-hub reads Hugging Face format presets
    "apache-beam[tfrecord]~=2.77.0",
    "google-crc32c>=1.5",  # fast TFRecord checksums in Beam
    # tensorflow-hub (imported by Beam's TensorFlow RunInference handler) still imports
    # pkg_resources, which setuptools 81 removed.
    "setuptools<81",
    "protobuf>=6.33,<7",
    "numpy>=1.26,<3",
    "pandas>=2.0,<3",
    "pyarrow>=14",
    "pillow>=10",
    "pyyaml>=6",
    "tqdm>=4.60",
    "absl-py>=2.0",
]

EXTRAS_REQUIRE = {
    "dev": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "nbclient>=0.10",
        "nbformat>=5.9",
        "ipykernel>=6.29",
        "matplotlib>=3.8",
        "scikit-learn>=1.3",
        "ruff>=0.6",
    ],
    "gcp": ["apache-beam[gcp]~=2.77.0"],
}

setuptools.setup(
    name="ppm",
    version="0.1.0",
    description=(
        "Reference TensorFlow 2 implementation of PPM/URM (JD.com), Taobao multimodal "
        "pre-training (SimTier, MAKE) and GRACE pre-ranking."
    ),
    packages=setuptools.find_packages(include=["ppm", "ppm.*", "beam_jobs", "beam_jobs.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    include_package_data=True,
)
