"""server.json (the MCP registry manifest) agrees with pyproject.toml and the CLI."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_server_json_matches_the_package() -> None:
    manifest = json.loads((ROOT / "server.json").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert manifest["version"] == project["version"]
    assert manifest["description"] and len(manifest["description"]) <= 100
    pypi = [p for p in manifest["packages"] if p["registryType"] == "pypi"]
    assert pypi and pypi[0]["identifier"] == project["name"] and pypi[0]["version"] == project["version"]
    assert pypi[0]["transport"]["type"] == "stdio"
    assert [a["value"] for a in pypi[0]["packageArguments"]] == ["stdio"]
    assert "hookline" in project["scripts"]
    remote = manifest["remotes"][0]
    assert remote["type"] == "streamable-http" and remote["url"].endswith("/mcp")
