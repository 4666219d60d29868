# Derives raw PCS response files from dcap-qvl QuoteCollateralV3 JSON.
import json, sys, os, urllib.parse, base64
src, out = sys.argv[1], sys.argv[2]
c = json.load(open(src))
os.makedirs(out, exist_ok=True)
def w(name, data):
    open(os.path.join(out, name), 'wb').write(data if isinstance(data, bytes) else data.encode())
w('tcb-info', '{"tcbInfo":' + c['tcb_info'] + ',"signature":"' + c['tcb_info_signature'] + '"}')
w('qe-identity', '{"enclaveIdentity":' + c['qe_identity'] + ',"signature":"' + c['qe_identity_signature'] + '"}')
w('tcb-info-chain', urllib.parse.quote(c['tcb_info_issuer_chain'], safe=''))
w('qe-identity-chain', c['qe_identity_issuer_chain'])
w('pck-crl-chain', urllib.parse.quote(c['pck_crl_issuer_chain'], safe=''))
w('pck-crl', bytes.fromhex(c['pck_crl']))
der = bytes.fromhex(c['root_ca_crl'])
b64 = base64.b64encode(der).decode()
w('root-ca-crl', '-----BEGIN X509 CRL-----\n' + '\n'.join(b64[i:i+64] for i in range(0, len(b64), 64)) + '\n-----END X509 CRL-----\n')
