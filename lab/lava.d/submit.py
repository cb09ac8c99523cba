#!/usr/bin/python3
"""Submit written LAVA jobs to a server, wait for them with progress and
fetch each one's log: the part of lab/lava submit that talks to LAVA.

  submit.py (--server URL --token TOKEN | --identity NAME) JOB_DIR...
  submit.py (--server URL --token TOKEN | --identity NAME) --check TYPE...

Each JOB_DIR holds job.yaml (lab/lava job). The server is LAVA's REST API
(v0.2) at URL (http://host:port, or its /RPC2 or /api/v0.2/ address), the
token one of its API tokens; --identity NAME takes both from lavacli's
identity NAME (~/.config/lavacli.yaml). Each job is validated by the
server, then submitted; a job the server refuses, a device type with no
device online, a server that does not answer and a token it does not take
are errors that name what was wrong, before anything runs. Then every job
is polled until it finishes (--check: only the server, the token and a
device online of each TYPE are checked, before any job is written); JOB_DIR gets job-id, output.yaml (the job's
log), lava-notes (what LAVA says went wrong: a job that did not complete,
a timeout) and wall-seconds (submission to end).

Exit status: 0 when every job completed, 1 when one did not or an error
stopped the submission, 2 on a usage error.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml


class ServerError(Exception):
    pass


def fail(message):
    print(f"lab/lava submit: {message}", file=sys.stderr)
    sys.exit(1)


class Server:
    def __init__(self, url, token):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ServerError(f"'{url}' is not a server address (http://HOST[:PORT])")
        # The REST API beside the XML-RPC one a lavacli identity names.
        netloc = parsed.netloc.rpartition("@")[2]
        self.base = f"{parsed.scheme}://{netloc}/api/v0.2"
        self.token = token

    def request(self, path, data=None, raw=False):
        url = f"{self.base}/{path}"
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
        request.add_header("Authorization", f"Token {self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            if e.code in (401, 403):
                raise ServerError(f"the server at {self.base} refused the token ({e.code}: {detail})") from None
            raise ServerError(f"{url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ServerError(f"the server at {self.base} is unreachable ({getattr(e, 'reason', e)})") from None
        return payload.decode(errors="replace") if raw else json.loads(payload or b"null")

    def all(self, path):
        items, page = [], f"{path}?limit=100"
        while page:
            answer = self.request(page)
            items += answer.get("results", [])
            nxt = answer.get("next")
            page = nxt[len(self.base) + 1:] if nxt and nxt.startswith(self.base) else None
        return items


def identity(name):
    path = os.path.join(os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config")), "lavacli.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            identities = yaml.safe_load(f) or {}
    except FileNotFoundError:
        fail(f"no lavacli identities ({path} does not exist): give --server and --token, or start "
             "the local instance (lab/lava server up)")
    if name not in identities:
        fail(f"no lavacli identity '{name}' in {path} (there are: {', '.join(identities) or 'none'})")
    entry = identities[name]
    if not entry.get("token"):
        fail(f"lavacli identity '{name}' has no token")
    return entry["uri"], entry["token"]


def main():
    parser = argparse.ArgumentParser(prog="lab/lava.d/submit.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server")
    parser.add_argument("--token")
    parser.add_argument("--identity")
    parser.add_argument("--poll", type=float, default=10)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("jobs", nargs="+")
    args = parser.parse_args()
    if args.identity and (args.server or args.token):
        parser.error("--identity, or --server and --token, not both")
    if bool(args.server) != bool(args.token):
        parser.error("--server and --token go together")
    url, token = identity(args.identity) if args.identity else (args.server, args.token)

    try:
        server = Server(url, token)
        whoami = server.request("system/whoami/")
        # whoami answers anyone; a token the server does not know is refused
        # by name on a call that needs one.
        user = whoami.get("user") if isinstance(whoami, dict) else whoami
        if not user:
            raise ServerError(f"the server at {server.base} did not take the token (it answers as anonymous)")
        devices = server.all("devices/")
    except ServerError as e:
        fail(str(e))

    def check_online(device_type, what):
        online = [d["hostname"] for d in devices
                  if d.get("device_type") == device_type and d.get("health") in ("Good", "Unknown")]
        if not online:
            states = ", ".join(f"{d['hostname']} {d.get('health')}" for d in devices
                               if d.get("device_type") == device_type)
            fail(f"{what}: no device of type {device_type} is online on {server.base} "
                 f"({states or 'none of that type'})")

    if args.check:
        for device_type in args.jobs:
            check_online(device_type, "the lanes asked for")
        print(f"lab/lava submit: {server.base} answers, takes the token (user {user}), and has "
              f"{', '.join(args.jobs)} online", file=sys.stderr)
        return

    definitions = {}
    for directory in args.jobs:
        with open(os.path.join(directory, "job.yaml"), encoding="utf-8") as f:
            definitions[directory] = f.read()
    # Before anything is submitted: every job valid, every device type with
    # a device that can run it.
    for directory, definition in definitions.items():
        check_online(yaml.safe_load(definition).get("device_type"), directory)
        try:
            answer = server.request("jobs/validate/", {"definition": definition})
        except ServerError as e:
            fail(f"{directory}/job.yaml: {e}")
        if answer and answer.get("message") not in (None, "", "Job valid."):
            fail(f"{directory}/job.yaml: the server refused it: {answer}")

    jobs = {}
    started = {}
    try:
        for directory, definition in definitions.items():
            answer = server.request("jobs/", {"definition": definition})
            job_id = answer["job_ids"][0]
            jobs[directory] = job_id
            started[directory] = time.monotonic()
            with open(os.path.join(directory, "job-id"), "w", encoding="utf-8") as f:
                f.write(f"{job_id}\n")
            print(f"lab/lava submit: {os.path.basename(directory)}: job {job_id}", file=sys.stderr)
    except ServerError as e:
        fail(f"submitting: {e}")

    finished = {}
    states = {}
    last_line = None
    while len(finished) < len(jobs):
        for directory, job_id in jobs.items():
            if directory in finished:
                continue
            try:
                state = server.request(f"jobs/{job_id}/")
            except ServerError as e:
                print(f"lab/lava submit: job {job_id}: {e}; trying again", file=sys.stderr)
                continue
            if state.get("state") == "Finished":
                finished[directory] = state
                with open(os.path.join(directory, "wall-seconds"), "w", encoding="utf-8") as f:
                    f.write(f"{time.monotonic() - started[directory]:.1f}\n")
                print(f"lab/lava submit: {os.path.basename(directory)}: job {job_id} {state.get('health')} "
                      f"on {state.get('actual_device')}", file=sys.stderr)
            else:
                states[job_id] = state.get("state")
        running = [f"{job_id} ({states.get(job_id, '?')})" for d, job_id in jobs.items() if d not in finished]
        line = f"{len(finished)}/{len(jobs)} finished; waiting for {', '.join(running)}"
        if running and line != last_line:
            print(f"lab/lava submit: {line}", file=sys.stderr)
            last_line = line
        if running:
            time.sleep(args.poll)

    status = 0
    for directory, job_id in jobs.items():
        state = finished[directory]
        notes = []
        try:
            log = server.request(f"jobs/{job_id}/logs/", raw=True)
        except ServerError as e:
            log = ""
            notes.append(f"the job's log could not be fetched: {e}")
        with open(os.path.join(directory, "output.yaml"), "w", encoding="utf-8") as f:
            f.write(log)
        if state.get("health") != "Complete":
            status = 1
            notes.append(f"job {job_id} ended {state.get('health')} on {state.get('actual_device')}")
        with open(os.path.join(directory, "lava-notes"), "w", encoding="utf-8") as f:
            f.write("".join(n + "\n" for n in notes))
    sys.exit(status)


if __name__ == "__main__":
    main()
