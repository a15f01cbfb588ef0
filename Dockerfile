# Inside GPT-2 in a container: CPU torch, Chromium and a CJK font (for PNG/SVG export and Chinese
# text), the bundled mini GPT-2. Build and run:
#
#   docker build -t inside-gpt2 .
#   docker run -p 8501:8501 -v hf-cache:/hf inside-gpt2          # then open http://localhost:8501
#
# GPU (NVIDIA, with the NVIDIA Container Toolkit on the host): build with a CUDA wheel of torch,
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t inside-gpt2:gpu .
#   docker run --gpus all -p 8501:8501 -v hf-cache:/hf inside-gpt2:gpu
# (the app picks CUDA when torch sees a GPU; GPT2VIZ_DEVICE=cpu overrides).
FROM python:3.11-slim

# The same system packages .ci/run installs: Chromium drives kaleido's static export, the Noto CJK
# font draws Chinese in exported figures.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

# torch first, from the index that matches the wanted build (CPU by default), so that the
# requirements' pin (torch==2.13.0) is already met and pip pulls no CUDA packages.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX"

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# The Hub cache (models and SAEs downloaded at run time) lives on a volume, shared by replicas.
ENV HF_HOME=/hf \
    BROWSER_PATH=/usr/bin/chromium \
    GPT2VIZ_CACHE_DIR=/app/cache \
    PYTHONUNBUFFERED=1
VOLUME ["/hf"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
