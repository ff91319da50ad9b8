#!/usr/bin/env bash
# A finding verified without the harness: one stack, started by hand with its own configuration, against the
# fakes as plain processes (sipharness dns / registrar), in a private network namespace; its own log is kept.
#     ci/evidence.sh baresip|pjsua|linphone failover|naptr|weight [SECONDS]   (as root; default 45 s)
# Scenarios (what docs/evidence/<stack>/*.md quote):
#   failover  _sip._udp.pbx.example.com SRV → primary 127.0.0.10 (silent: a UDP sink), secondary 127.0.0.20
#             (a registrar); transport UDP: when does the stack leave the primary, and for which target?
#   naptr     NAPTR pbx.example.com → _sip._tcp (the only SRV that leads to a registrar, over TCP; a decoy
#             _sip._udp SRV leads to a registrar at 127.0.0.30); transport 3 (no transport in the URI)
#   weight    SRV priority 0, weight 1 → 127.0.0.10 and weight 2 → 127.0.0.20, both registrars
# Output: build/evidence/STACK-SCENARIO/: the stack's own log (stack.log), the DNS queries (dns.jsonl) and the
# registrars' lines (*.jsonl). Nothing here judges: read the stack's log.
set -euo pipefail
cd "$(dirname "$0")/.."
stack="${1:?usage: ci/evidence.sh baresip|pjsua|linphone failover|naptr|weight [SECONDS]}"
scenario="${2:?scenario: failover|naptr|weight}"
seconds="${3:-45}"
if [ -z "${SIPHARNESS_IN_BOX:-}" ]; then  # again, inside a private network namespace with lo up
    exec env SIPHARNESS_IN_BOX=1 unshare --net -- bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
out="build/evidence/$stack-$scenario"
rm -rf "$out" && mkdir -p "$out"
out="$(cd "$out" && pwd)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
zone="$out/zone"
{
    echo '$ORIGIN pbx.example.com.'; echo '$TTL 60'
    echo '@ IN SOA ns.pbx.example.com. hostmaster.pbx.example.com. 1 3600 600 86400 60'
    echo '@ IN NS ns.pbx.example.com.'; echo 'ns IN A 127.0.0.53'
    case "$scenario" in
        failover) echo '_sip._udp IN SRV 0 10 5060 primary-host'; echo '_sip._udp IN SRV 10 10 5060 secondary-host' ;;
        naptr)    echo '@ IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp.pbx.example.com.'
                  echo '_sip._tcp IN SRV 0 10 5060 secondary-host'; echo '_sip._udp IN SRV 0 10 5060 decoy-host' ;;
        weight)   echo '_sip._udp IN SRV 0 1 5060 primary-host'; echo '_sip._udp IN SRV 0 2 5060 secondary-host' ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    echo 'primary-host IN A 127.0.0.10'; echo 'secondary-host IN A 127.0.0.20'; echo 'decoy-host IN A 127.0.0.30'
} >"$zone"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
python3 -m sipharness.harness.cli dns --zone "$zone" --listen 127.0.0.53:53 >"$out/dns.jsonl" 2>&1 & pids+=($!)
if [ "$scenario" = failover ]; then  # the primary: a UDP sink that never answers
    python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.10', 5060))
while True: s.recv(65536)" & pids+=($!)
else
    python3 -m sipharness.harness.cli registrar --listen udp:127.0.0.10:5060 --name primary >"$out/primary.jsonl" 2>&1 & pids+=($!)
fi
python3 -m sipharness.harness.cli registrar --listen udp:127.0.0.20:5060 --listen tcp:127.0.0.20:5060 --name secondary \
    >"$out/secondary.jsonl" 2>&1 & pids+=($!)
python3 -m sipharness.harness.cli registrar --listen udp:127.0.0.30:5060 --name decoy >"$out/decoy.jsonl" 2>&1 & pids+=($!)
for _ in $(seq 100); do  # every fake says "listening" first (a loaded box starts Python slowly)
    n=$(cat "$out"/dns.jsonl "$out"/secondary.jsonl "$out"/decoy.jsonl 2>/dev/null | grep -c '^listening' || true)
    [ "$n" -ge 4 ] && break
    sleep 0.2
done
transport_param=";transport=udp"
[ "$scenario" = naptr ] && transport_param=""
echo "ci/evidence.sh: $stack, $scenario, $seconds s; output in $out"
case "$stack" in
    baresip)
        cat >"$out/config" <<EOF
poll_method epoll
net_interface 127.0.0.1
sip_listen 127.0.0.1:5062
dns_server 127.0.0.53:53
module_path /usr/lib/baresip/modules
audio_player aubridge,nil
audio_source aubridge,nil
audio_alert aubridge,nil
module g711.so
module aubridge.so
module_app account.so
module_app menu.so
EOF
        echo "<sip:1234@pbx.example.com${transport_param}>;auth_pass=1234;regint=30;outbound=\"sip:pbx.example.com${transport_param}\";answermode=manual;mwi=no" >"$out/accounts"
        timeout "$seconds" baresip -f "$out" -s -v </dev/null >"$out/stack.log" 2>&1 || true ;;
    pjsua)
        cat >"$out/pjsua.py" <<EOF
import time, pjsua2 as pj
ep = pj.Endpoint(); ep.libCreate(); c = pj.EpConfig()
c.uaConfig.threadCnt = 0; c.uaConfig.mainThreadOnly = True; c.uaConfig.nameserver.append("127.0.0.53")
c.logConfig.level = 5; c.logConfig.consoleLevel = 0; c.logConfig.filename = "$out/stack.log"
ep.libInit(c)
for t in (pj.PJSIP_TRANSPORT_UDP, pj.PJSIP_TRANSPORT_TCP):
    tc = pj.TransportConfig(); tc.boundAddress = "127.0.0.1"; ep.transportCreate(t, tc)
ep.libStart(); ep.audDevManager().setNullDev()
a = pj.AccountConfig(); a.idUri = "sip:1234@pbx.example.com"; a.regConfig.registrarUri = "sip:pbx.example.com$transport_param"
a.regConfig.timeoutSec = 30; a.sipConfig.proxies.append("sip:pbx.example.com;lr$transport_param")
a.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", "1234", 0, "1234"))
acc = pj.Account(); acc.create(a)
end = time.time() + $seconds
while time.time() < end: ep.libHandleEvents(50)
ep.libDestroy()
EOF
        timeout $((seconds + 15)) python3 "$out/pjsua.py" >"$out/stdout" 2>&1 || true ;;
    linphone)
        mkdir -p "$out/home/.local/share/linphone"
        # liblinphone's "network up" probe (harness/linphone.py): an own address and a route back into lo
        ip addr replace 198.51.100.53/32 dev lo && ip route replace 87.98.157.38/32 dev lo src 198.51.100.53
        printf 'nameserver 127.0.0.53\n' >"$out/resolv.conf"
        cat >"$out/linphonerc" <<EOF
[sip]
sip_port=5062
sip_tcp_port=5062
sip_tls_port=0
[proxy_0]
reg_proxy=<sip:pbx.example.com${transport_param}>
reg_route=<sip:pbx.example.com${transport_param};lr>
reg_identity=<sip:1234@pbx.example.com>
reg_expires=30
reg_sendregister=1
[auth_info_0]
username=1234
passwd=1234
EOF
        (sleep "$seconds"; echo quit) | HOME="$out/home" timeout $((seconds + 15)) unshare --mount --propagation private \
            sh -c 'mount --bind "$1" /etc/resolv.conf && exec linphone-daemon --config "$2" --log "$3"' sh \
            "$out/resolv.conf" "$out/linphonerc" "$out/stack.log" >"$out/stdout" 2>&1 || true ;;
    *) echo "unknown stack $stack" >&2; exit 2 ;;
esac
echo "ci/evidence.sh: done: $(wc -l <"$out/stack.log") lines of $stack's own log; $(grep -c '"kind": "dns"' "$out/dns.jsonl" || true) DNS queries"
