"""Every `multishap ...` command the README shows parses with the CLI's own parser (no flag in the docs that the
CLI does not have); the Deploy section's kubectl commands name kustomizations that tests/test_deploy.py renders."""

import re
import shlex
from pathlib import Path

import pytest

from multishap.client.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)


def commands(program: str) -> list[list[str]]:
    found = []
    for block in BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words and words[0] == program:
                found.append(words[1:])
    return found


@pytest.mark.parametrize("args", commands("multishap"), ids=lambda a: " ".join(a[:2]))
def test_a_readme_command_parses(args):
    parsed = build_parser().parse_args(args)
    assert callable(parsed.run)


def test_the_deploy_section_shows_the_kustomizations_the_deploy_test_renders():
    shown = {a[-1] for a in commands("kubectl") if a[0] in ("kustomize", "apply")}
    assert shown and all((ROOT / path / "kustomization.yaml").exists() for path in shown)
    assert len(commands("multishap")) > 20
