#!/usr/bin/env bash
# Re-vendor the page's two browser libraries from npm into api/static/vendor (committed, so neither the
# server nor a user's browser ever fetches them from elsewhere; no CDN). Each keeps its licence beside it.
#   client-zip: builds the zip of loose photos in the browser, streaming (api/static/upload.js)
#   swagger-ui-dist: the interactive API reference at /docs
# Usage: scripts/vendor.sh   (or make vendor); change the versions here to upgrade.
set -euo pipefail
CLIENT_ZIP=2.5.1
SWAGGER_UI=5.36.0
cd "$(dirname "$0")/.."
out=api/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "client-zip@$CLIENT_ZIP" "swagger-ui-dist@$SWAGGER_UI" >/dev/null)
for tgz in "$tmp"/*.tgz; do mkdir -p "${tgz%.tgz}" && tar xzf "$tgz" -C "${tgz%.tgz}"; done
rm -rf "$out/client-zip" "$out/swagger-ui"
mkdir -p "$out/client-zip" "$out/swagger-ui"
cz="$tmp/client-zip-$CLIENT_ZIP/package"
cp "$cz/index.js" "$cz/LICENSE.txt" "$out/client-zip/"
sw="$tmp/swagger-ui-dist-$SWAGGER_UI/package"
cp "$sw/swagger-ui-bundle.js" "$sw/swagger-ui-bundle.js.LICENSE.txt" "$sw/swagger-ui.css" "$sw/LICENSE" "$sw/NOTICE" \
   "$out/swagger-ui/"
printf 'client-zip %s (npm), MIT: LICENSE.txt\n' "$CLIENT_ZIP" > "$out/client-zip/VERSION"
printf 'swagger-ui-dist %s (npm), Apache-2.0: LICENSE, NOTICE\n' "$SWAGGER_UI" > "$out/swagger-ui/VERSION"
# the bundle's last line points at a source map that is not vendored: no 404 for it in the browser's tools
sed -i '/^\/\/# sourceMappingURL=/d' "$out/swagger-ui/swagger-ui-bundle.js"
sed -i 's|/\*# sourceMappingURL=[^*]*\*/||' "$out/swagger-ui/swagger-ui.css"
echo "vendored into $out:" && du -sh "$out"/*
