# Three images from one file (docker-compose.yml builds them):
#   EXTRAS=api          the API and the migration: no PyTorch
#   EXTRAS=worker       CPU workers: the lean set, OpenVINO runs the shipped int8 model (no PyTorch, no
#                       Ultralytics, no PyTorch index, OpenCV's headless wheel, no apt packages)
#   EXTRAS=worker,gpu   the GPU segment worker: CUDA PyTorch (TORCH_INDEX .../whl/cu130) and Ultralytics
# EXTRAS is comma-separated with no spaces: the steps below match ",worker," and ",gpu," in it.
FROM python:3.11-slim
ARG EXTRAS=api
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
# the torch/torchvision pair scripts/install.sh installs: a torchvision from elsewhere does not
# import beside this torch (tests/test_compose.py checks the two files agree)
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# opencv-python's libraries (libGL pulls in Mesa and LLVM, about 210 MiB): only beside Ultralytics,
# which needs that wheel; the CPU image runs the headless one (below), which needs none of them
RUN case ",${EXTRAS}," in *,gpu,*|*,training,*) \
      apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/* ;; \
    esac
RUN case ",${EXTRAS}," in *,gpu,*|*,training,*) \
      pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" ;; \
    esac
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY api api
COPY worker worker
COPY segmentation segmentation
COPY core core
COPY db db
COPY services services
COPY training training
COPY cli cli
COPY models models
# The CPU image has no Ultralytics, so nothing there needs opencv-python's GUI build: the headless
# wheel of the same version writes the same cv2 package, with no system libraries. In the same step
# as the install, so the GUI build is in no layer of the image.
RUN pip install --no-cache-dir -e ".[${EXTRAS}]" && \
    case ",${EXTRAS}," in *,gpu,*|*,training,*) ;; *,worker,*) \
      v="$(pip show opencv-python | sed -n 's/^Version: //p')" && pip uninstall -y opencv-python && \
      pip install --no-cache-dir "opencv-python-headless==${v}" ;; \
    esac
RUN useradd --create-home wardrobe
USER wardrobe
