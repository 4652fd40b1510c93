#!/usr/bin/env bash
# The README's curl session, against a running `wardrobe serve` + `wardrobe worker`.
# Usage: export TOKEN=$(wardrobe users create alice); scripts/curl-session.sh [http://127.0.0.1:8000]
# (WARDROBE_TOKEN, which the CLI reads, does as well)
set -euo pipefail
URL=${1:-http://127.0.0.1:8000}
TOKEN=${TOKEN:-${WARDROBE_TOKEN:-}}
: "${TOKEN:?no token: export TOKEN=\$(wardrobe users create NAME) first (a plain TOKEN=... line is not seen by the script)}"
H="Authorization: Bearer $TOKEN"
cd "$(dirname "$0")/../examples/photos"
rm -f /tmp/photos.zip && zip -q /tmp/photos.zip *.jpg

echo '$ curl -i -H "Authorization: Bearer $TOKEN" -F file=@photos.zip '"$URL"'/v1/uploads'
curl -s -i -H "$H" -F file=@/tmp/photos.zip "$URL/v1/uploads" | tr -d '\r' | grep -v -E '^(Date|Server|Connection):' | tee /tmp/upload.out
JOB=$(tail -1 /tmp/upload.out | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo
while :; do
  BODY=$(curl -s -H "$H" "$URL/v1/jobs/$JOB")
  STATUS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$BODY")
  [ "$STATUS" = queued ] || [ "$STATUS" = running ] || break
  sleep 1
done
echo "\$ curl -H \"Authorization: Bearer \$TOKEN\" $URL/v1/jobs/$JOB"
echo "$BODY" | python3 -m json.tool
echo "\$ curl -H \"Authorization: Bearer \$TOKEN\" '$URL/v1/items?limit=1'"
curl -s -H "$H" "$URL/v1/items?limit=1" | python3 -m json.tool | tee /tmp/items.out
CUT=$(python3 -c 'import json; d=json.load(open("/tmp/items.out")); print(d["items"][0]["cutout_url"] if d["items"] else "")')
if [ -n "$CUT" ]; then
  echo "\$ curl -H \"Authorization: Bearer \$TOKEN\" -o cutout.webp $URL$CUT"
  curl -s -H "$H" -o /tmp/cutout.webp -w '%{http_code} %{content_type} %{size_download} bytes\n' "$URL$CUT"
fi
echo "\$ curl $URL/v1/items"
curl -s "$URL/v1/items"; echo
