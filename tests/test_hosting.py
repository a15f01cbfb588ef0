"""The container and the replica recipe say what the README says (Docker cannot run on the machine that
tests this, so the image is not built here: these checks keep the Dockerfile's commands the README's and
CI's, so a change to one that forgets the other fails)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def _runs() -> str:
    """The Dockerfile's RUN commands, continuation lines joined."""
    return " ".join(re.findall(r"^RUN (.*?)(?<!\\)$", DOCKERFILE.replace("\\\n", " "), flags=re.M))


def _apt_packages(text: str) -> set[str]:
    found = set()
    for line in re.findall(r"apt-get install ([^\n`&|]*)", text):
        found |= {w for w in line.split() if not w.startswith("-") and not w.startswith(">")}
    return found


def test_the_image_installs_the_readme_and_ci_packages():
    assert {"chromium", "fonts-noto-cjk"} <= _apt_packages(_runs())
    assert {"chromium", "fonts-noto-cjk"} <= _apt_packages(CI)
    assert "apt-get install -y chromium fonts-noto-cjk" in README


def test_the_image_pins_the_torch_the_requirements_pin_and_installs_them():
    pin = re.search(r"^torch==([\d.]+)", (ROOT / "requirements.txt").read_text(), flags=re.M).group(1)
    runs = _runs()
    assert f"torch=={pin}" in runs and f"torch=={pin}" in CI
    assert runs.index(f"torch=={pin}") < runs.index("-r requirements.txt")  # torch first: no CUDA pulled in
    assert "pip install -r requirements.txt" in README


def test_the_image_serves_the_readme_app_on_the_readme_port():
    cmd = re.search(r'^CMD \[(.*)\]$', DOCKERFILE, flags=re.M).group(1)
    assert '"streamlit", "run", "app.py"' in cmd and '"--server.port=8501"' in cmd
    assert re.search(r"^EXPOSE 8501$", DOCKERFILE, flags=re.M)
    assert "docker run -p 8501:8501" in README and "docker build -t inside-gpt2 ." in README
    assert "docker build -t inside-gpt2 ." in DOCKERFILE and "docker run -p 8501:8501" in DOCKERFILE


def test_the_replicas_are_sticky_locked_and_share_the_hub_cache():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    app = next(s for s in services.values() if "build" in s or "inside" in str(s.get("image", "")))
    env = app["environment"]
    assert str(env["GPT2VIZ_LOCKED"]) == "1" and env["HF_HOME"] == "/hf"
    assert "hf-cache:/hf" in app["volumes"] and "hf-cache" in compose["volumes"]
    labels = " ".join(app["labels"])
    assert "loadbalancer.sticky.cookie=true" in labels
    assert app.get("deploy", {}).get("replicas", 1) > 1 or "--scale" in README
