#!/usr/bin/env bash
# The whole compatibility corpus, writing the matrix of docs/compat.md (tests/compat/README.md).
exec bash "$(dirname "$0")/run.sh" "$@"
