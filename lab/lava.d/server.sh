#!/usr/bin/env bash
# A local LAVA instance on this machine for the lab's jobs: Debian's
# lava-server (web/API and scheduler) and one lava-dispatcher worker, with
# vfiolab's device types and devices, started without systemd.
#
#   lab/lava.d/server.sh up [--devices N] [--port PORT]
#   lab/lava.d/server.sh down
#   lab/lava.d/server.sh status
#
# up (root): installs what is missing of lava-server, lava-dispatcher,
#   lavacli and postgresql with apt-get (no recommends: no Apache); starts
#   the first PostgreSQL cluster when none answers (pg_ctlcluster; a fresh
#   install's postinst then creates lava-server's database, or up runs
#   /usr/share/lava-server/postinst.py when it could not); starts in the
#   background, each in its own session: lava-server's gunicorn serving
#   HTTP on 127.0.0.1:PORT (default 8000: XML-RPC at /RPC2, REST at
#   /api/v0.2/, no static files), lava-scheduler and lava-worker (named
#   after this machine's hostname, job limit N). Makes the superuser
#   vfiolab with an API token, the lavacli identity vfiolab-local (root's
#   ~/.config/lavacli.yaml), the device types vfiolab-qemu10 and
#   vfiolab-qemu7.2 (template lab/lava.d/vfiolab-qemu.jinja2, copied to
#   /etc/lava-server/dispatcher-config/device-types/, no health checks) and
#   N devices of each (vfiolab-qemu10-01 ...), health Good, whose device
#   dictionary names the QEMU that lab/qemu.sh prints for that version.
#   Devices of these types numbered above N are retired. Prints the URL,
#   the identity and the token. When everything up started still runs, it
#   says so and exits 0 (1 when asked for another N or PORT than it runs
#   with); an up that failed half-way leaves what it started running (see
#   status), and down or the next up stops it. No lava-publisher, no
#   Apache: the scheduler looks for work every 20 s and the worker asks
#   every 5 s, so a job starts 5 to 25 s after its submission.
# down: stops what up started, by recorded process id: TERM to each one's
#   process tree (its descendants and its session; PostgreSQL through
#   pg_ctlcluster, and only when up started it), KILL for what remains
#   after 20 s, then says whether anything remains. A job's QEMU goes with
#   its worker; the job ends Incomplete at the next up. Packages, the
#   database (devices, jobs, the token) and /etc/lava-server stay.
# status: what up started and whether it runs; the URL and the identity.
#
# State: $VFIOLAB_LAVA_STATE, default /var/lib/vfiolab-lava: "state" (shell
# assignments: URL, PORT, IDENTITY, TOKEN, USERNAME, WORKER, DEVICES,
# STARTED, the processes up started, and each one's PID_<name>), "token",
# each process's stdout/stderr in <name>.out, and worker/, lava-worker's
# directory (--worker-dir: its jobs database, its token, the jobs' files).
# The daemons' own logs: /var/log/lava-server/{gunicorn,lava-scheduler}.log,
# /var/log/lava-dispatcher/lava-worker.log. One instance a machine: the
# database and /etc/lava-server are the system's.
#
# Exit status: 0 done, 1 failure (the message says what), 2 usage error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

state_dir=${VFIOLAB_LAVA_STATE:-/var/lib/vfiolab-lava}
state_file=$state_dir/state
username=vfiolab
identity=vfiolab-local
qemu_versions=(10 7.2)
grace=20

# The database side of up, run by 'lava-server manage shell -c'; its
# parameters in SETUP_* variables. Prints token=... and worker_token=...
# shellcheck disable=SC2016
setup_py='
import os, re, sys
from django.contrib.auth.models import User
from linaro_django_xmlrpc.models import AuthToken
from lava_scheduler_app.models import Device, DeviceType, Worker
from lava_scheduler_app.schema import SubmissionException, validate_device
from lava_common.schemas.device import validate as validate_common

env = os.environ
username, hostname = env["SETUP_USER"], env["SETUP_WORKER"]
count, types = int(env["SETUP_DEVICES"]), env["SETUP_TYPES"].split()

user = User.objects.filter(username=username).first()
if user is None:
    user = User.objects.create_user(username, None, User.objects.make_random_password())
user.is_staff = user.is_superuser = True
user.save()
token = AuthToken.objects.filter(user=user, secret=env.get("SETUP_TOKEN") or None).first()
if token is None:
    token = AuthToken.objects.create(user=user, description="vfiolab lab/lava.d/server.sh")
print("token=" + token.secret)

worker, _ = Worker.objects.get_or_create(hostname=hostname,
    defaults={"description": "this machine (vfiolab lab/lava.d/server.sh)"})
worker.job_limit = count
# not go_health_active(): "manage workers update --health" fails on it in 2023.01
worker.health = Worker.HEALTH_ACTIVE
worker.save()
print("worker_token=" + worker.token)

bad = []
for name in types:
    dt, _ = DeviceType.objects.get_or_create(name=name)
    dt.disable_health_check = True
    dt.display = True
    dt.save()
    for n in range(1, count + 1):
        hostname_d = "%s-%02d" % (name, n)
        d, made = Device.objects.get_or_create(hostname=hostname_d,
            defaults={"device_type": dt, "worker_host": worker,
                      "state": Device.STATE_IDLE, "health": Device.HEALTH_GOOD})
        d.device_type, d.worker_host = dt, worker
        if d.state == Device.STATE_IDLE:
            d.health = Device.HEALTH_GOOD
        d.save()
        print("device %s: %s" % (hostname_d, "added" if made else "updated"))
        # lava_common'"'"'s schema (lava-run, "manage devices check") and the
        # scheduler'"'"'s own, which sets a device it refuses Bad
        try:
            config = d.load_configuration()
            if config is None:
                raise SubmissionException("its device dictionary does not render")
            validate_common(config)
            validate_device(config)
        except Exception as exc:
            bad.append("%s: %s" % (hostname_d, exc))
    for d in Device.objects.filter(device_type=dt).exclude(health=Device.HEALTH_RETIRED):
        m = re.fullmatch(r".*-(\d+)", d.hostname)
        if m and int(m.group(1)) > count:
            d.health = Device.HEALTH_RETIRED
            d.save()
            print("device %s: retired (above --devices %d)" % (d.hostname, count))
if bad:
    print("invalid device configuration:\n  " + "\n  ".join(bad))
    sys.exit(1)
'

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "server: $*" >&2; exit 1; }
usage_error() { echo "server: $*" >&2; echo "usage: $0 up [--devices N] [--port PORT] | down | status (--help for more)" >&2; exit 2; }
say() { echo "server: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

load_state() {
    STARTED=""
    [ -f "$state_file" ] || return 1
    # shellcheck disable=SC1090
    . "$state_file"
}

pid_of() { local v="PID_${1//-/_}"; echo "${!v:-}"; }

# ---------------------------------------------------------------- status
cmd_status() {
    if ! load_state; then
        echo "not started by server.sh (no $state_file)"
        return 0
    fi
    echo "url:      $URL"
    echo "identity: $IDENTITY (user $USERNAME)"
    echo "worker:   $WORKER (job limit $DEVICES)"
    local name pid running=0 total=0
    for name in $STARTED; do
        pid=$(pid_of "$name")
        total=$((total + 1))
        if alive "$pid"; then
            running=$((running + 1))
            echo "$name: running, pid $pid"
        else
            echo "$name: not running (was pid $pid)"
        fi
    done
    [ "$total" -gt 0 ] || echo "nothing started"
}

# ---------------------------------------------------------------- down
# tree_pids PID: PID, its descendants and the rest of the session it leads
# (postgres's children each make a session of their own).
tree_pids() {
    ps -eo pid=,ppid=,sid= | awk -v root="$1" '
        { pid[NR] = $1; ppid[NR] = $2; sid[NR] = $3 }
        END {
            mine[root] = 1
            do {
                more = 0
                for (i = 1; i <= NR; i++)
                    if (!(pid[i] in mine) && (ppid[i] in mine || sid[i] == root)) { mine[pid[i]] = 1; more = 1 }
            } while (more)
            for (i = 1; i <= NR; i++) if (pid[i] in mine) print pid[i]
        }'
}

# any_alive PID...: those of the PIDs still running.
any_alive() { local p; for p in "$@"; do alive "$p" && echo "$p"; done; return 0; }

# stop NAME PID: stops PID's process tree (postgres through pg_ctlcluster,
# the others with TERM to the session), KILL for what remains after
# $grace seconds. Prints the PIDs that still remain after that.
stop() {
    local name=$1 pid=$2 i tree left
    if ! alive "$pid"; then
        say "$name (pid $pid) was not running"
        return 0
    fi
    mapfile -t tree < <(tree_pids "$pid")
    say "stopping $name (pid $pid, ${#tree[@]} processes)"
    if [ "$name" = postgres ]; then
        # shellcheck disable=SC2086
        pg_ctlcluster $PG_CLUSTER stop -m fast >&2 || kill -TERM "$pid" 2>/dev/null || true
    else
        kill -TERM -- "-$pid" 2>/dev/null || true
        kill -TERM "${tree[@]}" 2>/dev/null || true
    fi
    for ((i = 0; i < grace * 4; i++)); do
        left=$(any_alive "${tree[@]}")
        [ -n "$left" ] || return 0
        sleep 0.25
    done
    say "$name: $(echo $left) did not stop in ${grace}s: KILL"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 1
    any_alive "${tree[@]}"
}

cmd_down() {
    [ "$(id -u)" = 0 ] || die "down needs root"
    if ! load_state; then
        say "nothing to stop: no $state_file (up was not run, or down already was)"
        return 0
    fi
    local name left="" reversed=""
    for name in $STARTED; do reversed="$name $reversed"; done
    for name in $reversed; do
        left+=" $(stop "$name" "$(pid_of "$name")" | tr '\n' ' ')"
    done
    if [ -n "${left// /}" ]; then
        # shellcheck disable=SC2086
        ps -o pid,sid,args -p "$(echo $left | tr ' ' ,)" >&2 || true
        die "processes up started remain: $left"
    fi
    rm -f "$state_file"
    say "stopped:${STARTED:+ $STARTED}; none of their processes remain"
}

# ---------------------------------------------------------------- up
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

apt_install() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        say "apt-get install failed; updating the package lists and trying again"
        apt-get update -q || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "${missing[@]}" ||
            die "apt-get install ${missing[*]} failed"
    fi
    # A postinst that failed (lava-server's wants its database) leaves the
    # package unconfigured: try once more now that PostgreSQL may run.
    if dpkg --audit 2>/dev/null | grep -q .; then
        dpkg --configure -a || die "dpkg --configure -a failed (see above)"
    fi
}

# The cluster lava-server uses: the first one pg_lsclusters lists; made
# (pg_createcluster) when there is none.
pg_cluster() {
    local line
    line=$(pg_lsclusters -h 2>/dev/null | head -n1)
    if [ -z "$line" ]; then
        local ver
        ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
        [ -n "$ver" ] || die "postgresql is installed but /usr/lib/postgresql has no version"
        say "creating PostgreSQL cluster $ver main"
        pg_createcluster "$ver" main >&2 || die "pg_createcluster $ver main failed"
        line=$(pg_lsclusters -h | head -n1)
    fi
    # ver cluster port status owner datadir logfile
    set -- $line
    PG_CLUSTER="$1 $2"
    PG_PORT=$3
    PG_DATA=$6
}

pg_pid() { head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

# start_session NAME CMD...: runs CMD in the background in a session of its
# own (so down stops all it spawns), output to $state_dir/NAME.out.
start_session() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$state_dir/$name.out" 2>&1 &
    local pid=$!
    sleep 1
    alive "$pid" || { tail -n 20 "$state_dir/$name.out" >&2; die "$name exited at once: $*"; }
    STARTED+=" $name"
    printf -v "PID_${name//-/_}" %s "$pid"
    write_state
    say "started $name (pid $pid)"
}

write_state() {
    mkdir -p "$state_dir"
    {
        printf 'URL=%q\nPORT=%q\nIDENTITY=%q\nUSERNAME=%q\nWORKER=%q\nDEVICES=%q\n' \
            "$URL" "$PORT" "$identity" "$username" "$WORKER" "$DEVICES"
        printf 'TOKEN=%q\nPG_CLUSTER=%q\nCOMPLETE=%q\nSTARTED=%q\n' "${TOKEN:-}" "${PG_CLUSTER:-}" "${COMPLETE:-0}" "${STARTED# }"
        local name v
        for name in $STARTED; do
            v="PID_${name//-/_}"
            printf '%s=%q\n' "$v" "${!v}"
        done
    } >"$state_file.tmp"
    mv "$state_file.tmp" "$state_file"
}

manage() { lava-server manage "$@"; }

# http_ok URL: whether URL answers 200.
http_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$1" || true)" = 200 ]; }

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

cmd_up() {
    local devices=1 port=8000
    while [ $# -gt 0 ]; do
        case "$1" in
            --devices) [ $# -ge 2 ] || usage_error "--devices needs a number"; devices=$2; shift 2 ;;
            --devices=*) devices=${1#*=}; shift ;;
            --port) [ $# -ge 2 ] || usage_error "--port needs a number"; port=$2; shift 2 ;;
            --port=*) port=${1#*=}; shift ;;
            *) usage_error "up: unknown option '$1'" ;;
        esac
    done
    [[ "$devices" =~ ^[0-9]+$ ]] && [ "$devices" -ge 1 ] && [ "$devices" -le 99 ] ||
        usage_error "--devices is a number from 1 to 99, not '$devices'"
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
        usage_error "--port is a TCP port number, not '$port'"
    [ "$(id -u)" = 0 ] || die "up needs root (apt-get, PostgreSQL, /etc/lava-server)"

    if load_state; then
        local name pid all=1
        for name in $STARTED; do
            alive "$(pid_of "$name")" || all=0
        done
        if [ "$all" = 1 ] && [ -n "$STARTED" ] && [ "${COMPLETE:-0}" = 1 ]; then
            [ "$DEVICES" = "$devices" ] && [ "$PORT" = "$port" ] ||
                die "already running with --devices $DEVICES --port $PORT, not --devices $devices --port $port: 'server.sh down' first"
            say "already running at $URL (started: $STARTED); 'server.sh down' stops it"
            echo "url: $URL"
            echo "identity: $IDENTITY"
            echo "token: $TOKEN"
            return 0
        fi
        say "a previous up did not finish or is partly gone (started: $STARTED): stopping what remains first"
        cmd_down
    fi

    mkdir -p "$state_dir"
    chmod 700 "$state_dir"
    URL=http://127.0.0.1:$port
    PORT=$port
    DEVICES=$devices
    WORKER=$(hostname)
    STARTED=""
    TOKEN=""
    COMPLETE=0

    # PostgreSQL first: lava-server's postinst makes its database only when
    # PostgreSQL answers.
    # A PostgreSQL that the install starts (invoke-rc.d, where no policy-rc.d
    # forbids it) is one this up started.
    local pg_before=down
    installed postgresql && pg_isready -q 2>/dev/null && pg_before=up
    apt_install postgresql
    pg_cluster
    [ "$PG_PORT" = 5432 ] || say "warning: PostgreSQL cluster $PG_CLUSTER listens on $PG_PORT; lava-server's default database settings say 5432"
    if pg_isready -q -p "$PG_PORT" && [ "$pg_before" = down ]; then
        say "PostgreSQL $PG_CLUSTER was started by its installation: down stops it"
        STARTED+=" postgres"
        PID_postgres=$(pg_pid)
        alive "$PID_postgres" || die "no postmaster pid in $PG_DATA/postmaster.pid"
        write_state
    elif pg_isready -q -p "$PG_PORT"; then
        say "PostgreSQL $PG_CLUSTER is running already (not started here; down leaves it)"
    else
        say "starting PostgreSQL $PG_CLUSTER"
        # shellcheck disable=SC2086
        pg_ctlcluster $PG_CLUSTER start || die "pg_ctlcluster $PG_CLUSTER start failed (see /var/log/postgresql/)"
        local i
        for ((i = 0; i < 60; i++)); do pg_isready -q -p "$PG_PORT" && break; sleep 0.5; done
        pg_isready -q -p "$PG_PORT" || die "PostgreSQL $PG_CLUSTER does not answer on port $PG_PORT"
        STARTED+=" postgres"
        PID_postgres=$(pg_pid)
        alive "$PID_postgres" || die "no postmaster pid in $PG_DATA/postmaster.pid"
        write_state
    fi

    apt_install lava-server lava-dispatcher lavacli
    # The database: made by the postinst when PostgreSQL answered then,
    # else now (the same script; it also migrates).
    if [ ! -f /etc/lava-server/settings.d/00-database.yaml ] && [ ! -f /etc/lava-server/instance.conf ]; then
        say "lava-server's database was not set up at install (PostgreSQL was down): running its postinst.py"
        /usr/bin/python3 /usr/share/lava-server/postinst.py || die "/usr/share/lava-server/postinst.py failed"
    elif ! manage migrate --check >/dev/null 2>&1; then
        say "lava-server's database needs migrating"
        /usr/bin/python3 /usr/share/lava-server/postinst.py --db || die "/usr/share/lava-server/postinst.py --db failed"
    fi

    # The device-type template and the devices' dictionaries.
    local dc=/etc/lava-server/dispatcher-config
    install -o lavaserver -g lavaserver -m 644 "$here/vfiolab-qemu.jinja2" "$dc/device-types/vfiolab-qemu.jinja2"
    local v dt qemu n dev
    local -A qemu_of
    for v in "${qemu_versions[@]}"; do
        # all its output first: head alone could end it with SIGPIPE
        qemu=$("$here/../qemu.sh" "$v") || die "lab/qemu.sh $v failed"
        qemu=${qemu%%$'\n'*}
        [ -x "$qemu" ] || die "lab/qemu.sh $v printed '$qemu', not an executable"
        qemu_of[$v]=$qemu
    done

    # The web/API server, the scheduler, the worker.
    port_busy "$port" && die "port $port is in use already (ss -ltnp 'sport = :$port'); pick another with --port"
    start_session gunicorn gunicorn3 lava_server.wsgi --log-level INFO \
        --log-file /var/log/lava-server/gunicorn.log -u lavaserver -g lavaserver \
        --worker-class eventlet --workers 2 --bind "127.0.0.1:$port" --timeout 120
    local i
    for ((i = 0; i < 120; i++)); do
        http_ok "$URL/api/v0.2/" && break
        alive "$PID_gunicorn" || { tail -n 20 "$state_dir/gunicorn.out" /var/log/lava-server/gunicorn.log >&2; die "gunicorn exited (logs above)"; }
        sleep 0.5
    done
    http_ok "$URL/api/v0.2/" || die "gunicorn does not answer at $URL/api/v0.2/ (see /var/log/lava-server/gunicorn.log)"

    # The devices' dictionaries, then user, token, worker, device types and
    # devices in one Django shell (each 'lava-server manage' command takes
    # 2 s to start; and there is none for a worker's job limit or a device
    # type's health checks in 2023.01).
    for v in "${qemu_versions[@]}"; do
        dt=vfiolab-qemu$v
        for ((n = 1; n <= devices; n++)); do
            dev=$(printf '%s-%02d' "$dt" "$n")
            printf "{%% extends 'vfiolab-qemu.jinja2' %%}\n{%% set qemu_command = '%s' %%}\n" "${qemu_of[$v]}" >"$dc/devices/$dev.jinja2"
            chown lavaserver:lavaserver "$dc/devices/$dev.jinja2"
        done
    done
    local out
    out=$(SETUP_USER=$username SETUP_WORKER=$WORKER SETUP_DEVICES=$devices \
        SETUP_TYPES="${qemu_versions[*]/#/vfiolab-qemu}" \
        SETUP_TOKEN="$(cat "$state_dir/token" 2>/dev/null || true)" \
        manage shell -c "$setup_py") || {
        echo "$out" | grep -v '^\(token\|worker_token\)=' >&2
        die "setting up user, worker, device types or devices failed (above; /var/log/lava-server/django.log)"
    }
    echo "$out" | grep -v '^\(token\|worker_token\)=' >&2 || true
    TOKEN=$(echo "$out" | sed -n 's/^token=//p')
    local worker_token
    worker_token=$(echo "$out" | sed -n 's/^worker_token=//p')
    [ -n "$TOKEN" ] && [ -n "$worker_token" ] || die "no API or worker token from the setup (output: $out)"
    (umask 077; echo "$TOKEN" >"$state_dir/token")
    write_state
    lavacli identities add --uri "$URL/RPC2" --username "$username" --token "$TOKEN" "$identity" ||
        die "lavacli identities add $identity failed"

    start_session scheduler lava-server manage lava-scheduler --level INFO \
        --log-file /var/log/lava-server/lava-scheduler.log
    mkdir -p /var/log/lava-dispatcher
    # A worker directory of its own (jobs database, token, the jobs' files),
    # not /var/lib/lava/dispatcher/worker/ that a system lava-worker uses.
    # Its token in its directory's token file, where it looks without
    # --token (which would show it in ps).
    mkdir -p "$state_dir/worker"
    (umask 077; echo "$worker_token" >"$state_dir/worker/token")
    start_session worker lava-worker --level INFO --url "$URL/" \
        --name "$WORKER" --worker-dir "$state_dir/worker" --ping-interval 5 \
        --log-file /var/log/lava-dispatcher/lava-worker.log

    # The worker is online once it has pinged the server.
    local online=""
    for ((i = 0; i < 60; i++)); do
        online=$(curl -s --max-time 10 -H "Authorization: Token $TOKEN" "$URL/api/v0.2/workers/$WORKER/" |
            /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin).get("state", ""))' 2>/dev/null || true)
        [ "$online" = Online ] && break
        alive "$PID_worker" || { tail -n 20 "$state_dir/worker.out" /var/log/lava-dispatcher/lava-worker.log >&2; die "lava-worker exited (logs above)"; }
        sleep 2
    done
    [ "$online" = Online ] || die "worker $WORKER is '$online', not Online, after 60s (see /var/log/lava-dispatcher/lava-worker.log)"

    COMPLETE=1
    write_state
    echo "url: $URL"
    echo "identity: $identity"
    echo "token: $TOKEN"
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    up) shift; cmd_up "$@" ;;
    down) shift; [ $# -eq 0 ] || usage_error "down takes no options"; cmd_down ;;
    status) shift; [ $# -eq 0 ] || usage_error "status takes no options"; cmd_status ;;
    "") usage >&2; exit 2 ;;
    *) usage_error "unknown command '$1'" ;;
esac
