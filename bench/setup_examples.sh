#!/usr/bin/env bash
# Install GitHub's webhook example payloads (@octokit/webhooks-examples) into <repo>/.tools,
# where tests/fixtures/github_examples.py looks for them. Idempotent: does nothing when present.
set -euo pipefail

version="7.6.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
package="$root/.tools/node_modules/@octokit/webhooks-examples"

if [[ -f "$package/api.github.com/index.json" ]] \
    && grep -q "\"version\": \"$version\"" "$package/package.json" 2>/dev/null; then
    echo "webhooks-examples $version already in $root/.tools"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm is required to install @octokit/webhooks-examples" >&2
    exit 1
fi

mkdir -p "$root/.tools"
npm install --prefix "$root/.tools" --no-audit --no-fund --no-save "@octokit/webhooks-examples@$version"
echo "installed webhooks-examples $version into $root/.tools"
