#!/usr/bin/env bash
# The whole authsvc flow with curl, against a running server.
#
#   BASE_URL=http://127.0.0.1:8000 bash examples/curl.sh
#
# ADMIN_EMAIL and ADMIN_PASSWORD, if set, also list users as that admin
# (make one with: flask --app authsvc users create EMAIL --admin).
# Every step checks its status code; the script stops at the first surprise.
set -euo pipefail

BASE_URL=${BASE_URL:-http://127.0.0.1:8000}
EMAIL=${EMAIL:-curl-$(date +%s)-$RANDOM@example.com}
PASSWORD=${PASSWORD:-violet-kettle-orbit-42}
BODY=$(mktemp)
trap 'rm -f "$BODY"' EXIT

# call EXPECTED_STATUS METHOD PATH [curl arguments...]: print the answer, check the status.
call() {
  local expected=$1 method=$2 path=$3
  shift 3
  local status
  status=$(curl -sS -o "$BODY" -w '%{http_code}' -X "$method" "$BASE_URL$path" "$@")
  printf '%s %s -> %s\n' "$method" "$path" "$status"
  if [ -s "$BODY" ]; then cat "$BODY"; echo; fi
  if [ "$status" != "$expected" ]; then
    echo "expected $expected" >&2
    exit 1
  fi
}

# field NAME: read a field of the last JSON answer.
field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$BODY" "$1"
}

json=(-H 'Content-Type: application/json')
credentials="{\"email\": \"$EMAIL\", \"password\": \"$PASSWORD\"}"

call 200 GET /healthz
call 201 POST /auth/signup "${json[@]}" -d "$credentials"
ACCESS=$(field accessToken)
REFRESH=$(field refreshToken)

call 200 GET /users/me -H "Authorization: Bearer $ACCESS"

call 200 POST /auth/refresh -H "Authorization: Bearer $REFRESH"
ACCESS=$(field accessToken)
NEW_REFRESH=$(field refreshToken)

call 200 POST /auth/signin "${json[@]}" -d "$credentials"
PHONE_ACCESS=$(field accessToken)

call 200 GET /auth/sessions -H "Authorization: Bearer $PHONE_ACCESS"

call 204 POST /auth/signout -H "Authorization: Bearer $ACCESS"
call 401 GET /users/me -H "Authorization: Bearer $ACCESS"
call 401 POST /auth/refresh -H "Authorization: Bearer $NEW_REFRESH"
call 200 GET /users/me -H "Authorization: Bearer $PHONE_ACCESS"

call 403 GET /users -H "Authorization: Bearer $PHONE_ACCESS"
if [ -n "${ADMIN_EMAIL:-}" ] && [ -n "${ADMIN_PASSWORD:-}" ]; then
  call 200 POST /auth/signin "${json[@]}" \
    -d "{\"email\": \"$ADMIN_EMAIL\", \"password\": \"$ADMIN_PASSWORD\"}"
  ADMIN=$(field accessToken)
  call 200 GET '/users?limit=2' -H "Authorization: Bearer $ADMIN"
fi

call 200 GET /.well-known/jwks.json
call 204 DELETE /users/me -H "Authorization: Bearer $PHONE_ACCESS"
call 401 POST /auth/signin "${json[@]}" -d "$credentials"
echo "authsvc walk-through: all steps answered as expected"
