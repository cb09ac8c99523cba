#!/usr/bin/python3
"""LAVA glue for lab/lava: the job a lane's export becomes, the device a
lava-run on this machine boots it on, and the run folder its log becomes.

  lava.py job EXPORT_DIR --device-type TYPE --url-base URL --out JOB.yaml
  lava.py device --template-dir DIR --qemu-command PATH --job JOB.yaml
                 --out DEVICE.yaml
  lava.py results LOG --out DIR
  lava.py errors LOG
  lava.py schema JOB.yaml

EXPORT_DIR is what lab/run --lava-export wrote. A job boots that machine
with LAVA's qemu boot method: the machine's QEMU arguments are the job's
context extra_options (the device type vfiolab-qemu.jinja2 puts them after
the QEMU its device dictionary names), the kernel, initramfs and NVMe
scratch image are deployed to tmpfs, and one console monitor per plan entry
turns the guest's "vfiolab-lava:" lines (lab/runner/lava_console.h) into
test cases, the entry as the test suite.

LOG is a job's log as lava-run writes it (output.yaml) or as the server
gives it (lavacli jobs logs --raw): a YAML list of records. results writes
ktap.txt (the guest's "vfiolab-ktap:" lines, the document lab/run gets),
console.log (every other line of the console, in the kernel's time
order: chronological), lava-results.tsv (the
monitors' test cases) and lava-errors (what LAVA said went wrong).
"""

import argparse
import json
import re
import shlex
import sys

import yaml

# A monitor's name: LAVA's job schema allows these characters only.
NAME_CHARACTERS = re.compile(r"[^-_a-zA-Z0-9.]")
CASE_PATTERN = r"vfiolab-lava: case (?P<test_case_id>\S+) (?P<result>pass|fail|skip)"


def fail(message):
    print(f"lab/lava: {message}", file=sys.stderr)
    sys.exit(1)


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_conf(path):
    """run.conf: NAME=VALUE lines, values quoted by bash's printf %q."""
    conf = {}
    for line in read_lines(path):
        name, _, value = line.partition("=")
        words = shlex.split(value)
        conf[name] = words[0] if words else ""
    return conf


def suite_name(entry):
    return NAME_CHARACTERS.sub("-", entry)


def plan_names(plan_path):
    return [line.split()[0] for line in read_lines(plan_path) if not line.lstrip().startswith("#")]


def job(args):
    export = args.export.rstrip("/")
    conf = read_conf(f"{export}/run.conf")
    append = read_lines(f"{export}/append")[0]
    qemu_binary, qemu_version = read_lines(f"{export}/qemu")[:2]
    names = plan_names(f"{export}/plan")
    suites = [suite_name(name) for name in names]
    if len(set(suites)) != len(suites):
        fail(f"two plan entries have the same LAVA suite name in {export}/plan")
    # The machine, then its four serial ports as lab/run has them (ttyS0 the
    # console, here LAVA's connection; the results, files and progress ports
    # unused: everything comes over the console), then its devices.
    ports = ["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]
    for port in ("results", "files", "progress"):
        ports += ["-chardev", f"null,id={port}", "-serial", f"chardev:{port}"]
    machine = read_lines(f"{export}/machine.args") + ports + read_lines(f"{export}/devices.args")
    # LAVA joins the QEMU command line with spaces and splits it as a shell
    # does: a value with a space keeps it through shell quoting.
    extra_options = [shlex.quote(arg) for arg in machine]
    url = args.url_base.rstrip("/")
    run_timeout = int(conf.get("run_timeout") or 2700)
    monitors = []
    for name, suite in zip(names, suites):
        monitors.append({
            "name": suite,
            "start": rf"vfiolab-lava: begin {re.escape(name)}[\r\n]",
            "end": rf"vfiolab-lava: end {re.escape(name)} (pass|fail|skip)",
            "pattern": CASE_PATTERN,
        })
    # What the guest does after its plan (the debug kernels' kmemleak scan),
    # up to its power-off, is in the log too.
    monitors.append({
        "name": "lab-power-off",
        "start": "lab: plan runner exited",
        "end": "lab: files sent; powering off",
        "pattern": CASE_PATTERN,
    })
    definition = {
        "job_name": f"vfiolab {conf.get('lane') or 'run'}: {len(names)} programs on QEMU {qemu_version}",
        "device_type": args.device_type,
        "visibility": "public",
        "priority": "medium",
        "timeouts": {
            "job": {"seconds": run_timeout + 1200},
            "action": {"minutes": 10},
            "actions": {"lava-test-monitor": {"seconds": run_timeout}},
            "connections": {"lava-test-monitor": {"seconds": run_timeout}},
        },
        "context": {"arch": "x86_64", "extra_options": extra_options},
        "metadata": {
            "vfiolab.lane": conf.get("lane") or "",
            "vfiolab.qemu": qemu_version,
            "vfiolab.programs": len(names),
        },
        "actions": [
            {"deploy": {
                "to": "tmpfs",
                "timeout": {"minutes": 10},
                "images": {
                    "kernel": {"url": f"{url}/bzImage",
                               "image_arg": f"-kernel {{kernel}} -append {shlex.quote(append)}"},
                    "ramdisk": {"url": f"{url}/initramfs.cpio", "image_arg": "-initrd {ramdisk}"},
                    "scratch": {"url": f"{url}/nvme-scratch.img",
                                "image_arg": "-drive if=none,id=scratch,format=raw,file={scratch}"},
                },
            }},
            {"boot": {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": 10}}},
            {"test": {"timeout": {"seconds": run_timeout}, "monitors": monitors}},
        ],
    }
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(f"# vfiolab lane {conf.get('lane') or '(none)'} as a LAVA job, written by lab/lava job.\n")
        f.write(f"# QEMU {qemu_version}; on the machine that wrote it: {qemu_binary}\n")
        yaml.safe_dump(definition, f, sort_keys=False, width=1000)


def device(args):
    import jinja2

    with open(args.job, encoding="utf-8") as f:
        context = (yaml.safe_load(f) or {}).get("context", {})
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(args.template_dir), autoescape=False,
                                     trim_blocks=True)
    # The device dictionary a server would hold for such a device.
    dictionary = ("{% extends 'vfiolab-qemu.jinja2' %}\n"
                  f"{{% set qemu_command = '{args.qemu_command}' %}}\n")
    rendered = environment.from_string(dictionary).render(**context)
    yaml.safe_load(rendered)  # fails here, not in lava-run, when it is not YAML
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(rendered)


def log_records(path):
    """The records of a job's log: one a line, "{...}" as lava-run prints
    them or "- {...}" as the server keeps them (YAML; JSON but for the odd
    tag). A line that does not parse (a log cut off mid-line) is left out."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("- "):
                line = line[2:]
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                try:
                    record = yaml.load(line, Loader=loader)
                except yaml.YAMLError:
                    continue
            if isinstance(record, dict):
                records.append(record)
    return records


STAMP = re.compile(r"\[\s*(\d+)\.(\d+)\] ")


def chronological(lines):
    """The console's lines in the kernel's time order, each kernel message
    once. While the plan runs the guest relays the kernel's messages from
    /dev/kmsg (lab/runner/lava_console.h), up to 200 ms after they were
    logged; after an Oops or a panic the kernel raises the console's level
    again and prints its messages itself, beside the relay's copies. A line
    without a timestamp keeps its place after the kernel line before it."""
    keyed, at = [], (0, 0)
    for index, line in enumerate(lines):
        match = STAMP.match(line)
        if match:
            at = (int(match.group(1)), int(match.group(2)))
        keyed.append((at, index, line))
    keyed.sort()
    seen, ordered = set(), []
    for _, _, line in keyed:
        if STAMP.match(line):
            if line in seen:
                continue
            seen.add(line)
        ordered.append(line)
    return ordered


def results(args):
    records = log_records(args.log)
    console, ktap, cases, errors = [], [], [], []
    for record in records:
        level, message = record.get("lvl"), record.get("msg")
        if level == "target" and isinstance(message, str):
            # One record a console line, less its line break. LAVA's
            # dispatcher (shell.py, ShellLogger) drops carriage returns,
            # escape characters and empty lines, and writes '"' as '\\"';
            # the quote comes back.
            line = message.rstrip("\r").replace('\\"', '"')
            if line.startswith("vfiolab-ktap: "):
                ktap.append(line[len("vfiolab-ktap: "):])
            else:
                console.append(line)
        elif level == "results" and isinstance(message, dict):
            if message.get("definition") == "lava":
                # LAVA's own steps: the job's end says why it failed.
                if message.get("result") == "fail" and message.get("error_msg"):
                    errors.append(f"the job failed: {message['error_msg']} ({message.get('error_type', '?')})")
            else:
                cases.append((message.get("definition", ""), message.get("case", ""), message.get("result", "")))
        elif level == "error" and isinstance(message, str):
            errors.append(message)
    with open(f"{args.out}/ktap.txt", "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in ktap))
    with open(f"{args.out}/console.log", "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in chronological(console)))
    with open(f"{args.out}/lava-results.tsv", "w", encoding="utf-8") as f:
        f.write("suite\tcase\tresult\n")
        f.write("".join(f"{s}\t{c}\t{r}\n" for s, c, r in cases))
    with open(f"{args.out}/lava-errors", "w", encoding="utf-8") as f:
        f.write("".join(e.replace("\n", " ") + "\n" for e in dict.fromkeys(errors)))
    counts = {}
    for _, case, result in cases:
        if case != "program":
            counts[result] = counts.get(result, 0) + 1
    print(f"lab/lava: LAVA's test cases: {counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
          f"{counts.get('skip', 0)} skip, in {len({s for s, c, _ in cases if c == 'program'})} suites "
          f"({len(ktap)} KTAP lines, {len(console)} console lines)")


def errors(args):
    """What LAVA said went wrong in a log: its error records and the
    reasons of its own failed steps, a line each."""
    seen = set()
    for record in log_records(args.log):
        level, message = record.get("lvl"), record.get("msg")
        text = None
        if level == "error" and isinstance(message, str):
            text = message
        elif level == "results" and isinstance(message, dict) and message.get("definition") == "lava" \
                and message.get("result") == "fail":
            text = message.get("extra", {}).get("error_msg")
        if text and text not in seen:
            seen.add(text)
            print(text.replace("\n", " "))


def schema(args):
    """The job against LAVA's job schema, strictly, as a server checks a
    submission (lava_common, from lava-dispatcher's lava-common)."""
    from lava_common.schemas import validate
    import voluptuous

    with open(args.job, encoding="utf-8") as f:
        try:
            definition = yaml.safe_load(f)
        except yaml.YAMLError as e:
            fail(f"{args.job} is not YAML: {e}")
    try:
        validate(definition, strict=True)
    except voluptuous.Invalid as e:
        where = " / ".join(str(p) for p in e.path) or "the job"
        fail(f"{args.job}: LAVA's job schema refuses it: {e.msg} (at {where})")


def main():
    parser = argparse.ArgumentParser(prog="lab/lava.d/lava.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("job")
    p.add_argument("export")
    p.add_argument("--device-type", required=True)
    p.add_argument("--url-base", required=True)
    p.add_argument("--out", required=True)
    p = commands.add_parser("device")
    p.add_argument("--template-dir", required=True)
    p.add_argument("--qemu-command", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--out", required=True)
    p = commands.add_parser("results")
    p.add_argument("log")
    p.add_argument("--out", required=True)
    p = commands.add_parser("errors")
    p.add_argument("log")
    p = commands.add_parser("schema")
    p.add_argument("job")
    args = parser.parse_args()
    {"job": job, "device": device, "results": results, "errors": errors, "schema": schema}[args.command](args)


if __name__ == "__main__":
    main()
