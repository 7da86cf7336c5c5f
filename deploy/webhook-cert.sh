#!/usr/bin/env bash
# Provisions the webhook's serving certificate: a CA and a certificate for the Service
# lanes-operator-webhook.lanes-system.svc (openssl), the Secret the operator mounts, and
# the CA as the webhook configurations' caBundle. Run after applying deploy/.
set -euo pipefail
ns=lanes-system
svc=lanes-operator-webhook
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=lanes-webhook-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$svc.$ns.svc" \
  -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc\nextendedKeyUsage=serverAuth\n' \
  "$svc" "$svc" "$ns" "$svc" "$ns" > "$dir/ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 825 -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null
kubectl -n "$ns" create secret tls lanes-operator-webhook-tls \
  --cert="$dir/tls.crt" --key="$dir/tls.key" --dry-run=client -o yaml | kubectl apply -f -
ca=$(base64 -w0 < "$dir/ca.crt")
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  kubectl patch "$kind" lanes-operator --type=json \
    -p "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"}]"
done
kubectl -n "$ns" rollout restart deployment/lanes-operator
