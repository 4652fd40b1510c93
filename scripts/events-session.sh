#!/usr/bin/env bash
# The README's live-progress and retry session, against a running `wardrobe serve` + `wardrobe worker`:
# an upload watched on its event stream, cancelled half way, then retried (only the photos the cancel
# stopped go again) and watched to its end.
# Usage: TOKEN=$(wardrobe users create alice) scripts/events-session.sh [http://127.0.0.1:8000]
set -euo pipefail
URL=${1:-http://127.0.0.1:8000}
: "${TOKEN:?set TOKEN to a token from 'wardrobe users create NAME'}"
H="Authorization: Bearer $TOKEN"
cd "$(dirname "$0")/../examples/photos"
rm -f /tmp/events.zip && zip -q /tmp/events.zip *.jpg && printf 'not a photo' > /tmp/notes.jpg && zip -qj /tmp/events.zip /tmp/notes.jpg
# item events are long (an item's whole body): shown cut to 150 characters
short() { while IFS= read -r line; do if [ ${#line} -gt 150 ]; then echo "${line:0:150}…"; else echo "$line"; fi; done; }

echo '$ curl -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" -F file=@photos.zip '"$URL"'/v1/uploads'
curl -s -D /tmp/upload.head -o /tmp/upload.out -H "$H" -F file=@/tmp/events.zip "$URL/v1/uploads"
tr -d '\r' < /tmp/upload.head | grep -E '^(HTTP|Location|Retry-After)'
JOB=$(python3 -c 'import json; print(json.load(open("/tmp/upload.out"))["id"])')
echo
echo "\$ curl -N -H \"Authorization: Bearer \$TOKEN\" $URL/v1/jobs/$JOB/events   # the job is cancelled (below) after its second garment"
curl -s -N -H "$H" "$URL/v1/jobs/$JOB/events" > /tmp/events-1.txt &
STREAM=$!
until [ "$(grep -c '^event: item' /tmp/events-1.txt)" -ge 2 ]; do sleep 0.1; done
curl -s -X DELETE -H "$H" "$URL/v1/jobs/$JOB" > /tmp/cancel.out
wait $STREAM  # the stream ends by itself with the job
tr -d '\r' < /tmp/events-1.txt | short
echo "\$ curl -s -X DELETE -H \"Authorization: Bearer \$TOKEN\" $URL/v1/jobs/$JOB | jq '{status, progress}'   # (sent after the second item event)"
python3 -c 'import json,sys; d=json.load(open("/tmp/cancel.out")); print(json.dumps({"status": d["status"], "progress": {k: d["progress"][k] for k in ("photos_total", "photos_done", "photos_failed", "items_found")}}, indent=2))'
echo
echo "\$ curl -s -i -X POST -H \"Authorization: Bearer \$TOKEN\" $URL/v1/jobs/$JOB/retry"
curl -s -D /tmp/retry.head -o /tmp/retry.out -X POST -H "$H" "$URL/v1/jobs/$JOB/retry"
tr -d '\r' < /tmp/retry.head | grep -E '^(HTTP|Location|Retry-After)'
python3 -c 'import json; d=json.load(open("/tmp/retry.out")); print(json.dumps({"status": d["status"], "retried_photos": d["retried_photos"], "errors": d["errors"]}, indent=2))'
echo
echo "\$ curl -N -H \"Authorization: Bearer \$TOKEN\" $URL/v1/jobs/$JOB/events"
curl -s -N -H "$H" "$URL/v1/jobs/$JOB/events" | tr -d '\r' | short
echo "\$ curl -s -X POST -H \"Authorization: Bearer \$TOKEN\" $URL/v1/jobs/$JOB/retry"
curl -s -X POST -H "$H" "$URL/v1/jobs/$JOB/retry"; echo
