# megabio on NVIDIA's NGC PyTorch image (which carries apex: FusedLayerNorm, FusedAdam), with the CUDA kernels
# built ahead of time for A100 (sm_80) and H100 (sm_90).
#
#   docker build -t megabio .
#   # V100 (sm_70, the paper's hardware) needs a CUDA 12 base, since CUDA 13 dropped sm_70:
#   docker build -t megabio:cuda12 --build-arg BASE_IMAGE=nvcr.io/nvidia/pytorch:25.01-py3 \
#       --build-arg TORCH_CUDA_ARCH_LIST="7.0;8.0;9.0" .
#   docker run --gpus all --ipc=host --rm megabio model-info --preset 345m
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.09-py3
FROM ${BASE_IMAGE}

ARG TORCH_CUDA_ARCH_LIST="8.0;9.0"
# avx2: the image must also run on hosts without AVX-512 (the build would otherwise tune for its own CPU).
ARG MEGABIO_CPU_CAPABILITY=avx2
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    MEGABIO_CPU_CAPABILITY=${MEGABIO_CPU_CAPABILITY} \
    MEGABIO_BUILD_CUDA=1 \
    MAX_JOBS=8

WORKDIR /opt/megabio
COPY setup.py pyproject.toml README.md ./
COPY csrc csrc
COPY megabio megabio
COPY tools tools
COPY examples examples
# The base image's torch is used as it is (--no-build-isolation); MEGABIO_BUILD_CUDA=1 fails the build
# rather than ship an image without its CUDA kernels.
RUN pip install --no-build-isolation --no-cache-dir -e . && python tools/check_cuda_build.py /opt/megabio

ENTRYPOINT ["megabio"]
CMD ["--help"]
