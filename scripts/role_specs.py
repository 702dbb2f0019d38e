# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the shared role options into every role's meta/argument_specs.yml.

The options that several roles share (connection, Deployment model, fence helper, run id,
report, ...) are defined once, in roles/common/meta/shared_options.yml. Ansible reads each
role's meta/argument_specs.yml statically, so this script copies them there:

- the common role's "defaults" entry point lists every shared option;
- every other role's "main" entry point lists its own options (as they are in its file, in
  their order) followed by the shared options that role takes ("roles" in the source: all but
  those named under "without").

    .venv/bin/python scripts/role_specs.py           # rewrite the files that differ
    .venv/bin/python scripts/role_specs.py --check   # exit 1 and name the files that differ

tests/unit/scripts/test_role_specs.py runs the check and compares every role's shared options
with their definition, field by field.
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("roles") / "common" / "meta" / "shared_options.yml"
COMMON = "common"
COMMON_ENTRY = "defaults"
ENTRY = "main"

# The keys of an option that must agree with the definition, and the order they are written in.
COMPARED = ("description", "type", "elements", "choices", "default", "no_log", "aliases")
KEY_ORDER = ("description", "type", "elements", "required", "choices", "default", "no_log", "aliases",
             "version_added", "options")

HEADER = """---
# Generated in part by scripts/role_specs.py: the options that several roles share are defined
# once, in roles/common/meta/shared_options.yml; edit them there and run the script. The role's own
# options are edited here. tests/unit/scripts/test_role_specs.py fails when the two disagree.
"""


def load(path):
    with open(str(path), "rb") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def source(root=ROOT):
    """The shared definition: {"options": {...}, "roles": {...}, "deprecated": {...}}."""
    data = load(Path(root) / SOURCE)
    data.setdefault("options", {})
    data.setdefault("roles", {})
    data.setdefault("deprecated", {})
    return data


def shared_names(data, role):
    """The shared options ROLE's specification lists, in the order of the definition."""
    if role == COMMON:
        return list(data["options"])
    without = set(((data["roles"].get(role) or {}).get("without")) or ())
    return [name for name in data["options"] if name not in without]


def spec_path(root, role):
    return Path(root) / "roles" / role / "meta" / "argument_specs.yml"


def roles_with_specs(root=ROOT):
    return sorted(p.parent.parent.name for p in (Path(root) / "roles").glob("*/meta/argument_specs.yml"))


def entry_of(role):
    return COMMON_ENTRY if role == COMMON else ENTRY


def _ordered(option):
    option = dict(option)
    out = {}
    for key in KEY_ORDER:
        if key in option:
            out[key] = option.pop(key)
    out.update(sorted(option.items()))
    return out


def generate(root=ROOT, role=None, current=None):
    """The specification of ROLE (a dict) with the shared options written in."""
    data = source(root)
    current = current if current is not None else load(spec_path(root, role))
    specs = current.get("argument_specs") or {}
    entry = entry_of(role)
    if entry not in specs:
        raise SystemExit("%s: no %r entry point" % (spec_path(root, role), entry))
    out_specs = {}
    for name, spec in specs.items():
        spec = dict(spec or {})
        if name == entry:
            options = spec.get("options") or {}
            own = [(k, v) for k, v in options.items() if k not in data["options"]]
            merged = dict((k, _ordered(v)) for k, v in own)
            for shared in shared_names(data, role):
                merged[shared] = _ordered(data["options"][shared])
            spec["options"] = merged
        out_specs[name] = spec
    return {"argument_specs": out_specs}


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key (as the hand-written files were)."""

    def increase_indent(self, flow=False, indentless=False):
        return super(_Dumper, self).increase_indent(flow, False)


def _no_aliases(_dumper, _data):
    return True


_Dumper.ignore_aliases = _no_aliases


def own_comment(text):
    """The comment lines at the top of a specification file that are not the generated header
    (a role's own note, kept)."""
    header = set(HEADER.splitlines())
    lines = []
    for line in text.splitlines():
        if line.strip() == "---" or line in header:
            continue
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def render(spec, comment=""):
    body = yaml.dump(spec, Dumper=_Dumper, default_flow_style=False, sort_keys=False, width=88,
                     allow_unicode=True)
    return HEADER + comment + body


def expected_files(root=ROOT):
    """{path: text} for every role with an argument specification."""
    out = {}
    for role in roles_with_specs(root):
        path = spec_path(root, role)
        out[path] = render(generate(root, role), own_comment(path.read_text(encoding="utf-8")))
    return out


def stale(root=ROOT):
    """The specification files whose text is not what this script writes."""
    return [path for path, text in sorted(expected_files(root).items())
            if path.read_text(encoding="utf-8") != text]


def differences(root=ROOT):
    """One line per shared option that a role's specification gets wrong (missing, a field that
    differs from the definition, or listed by a role that does not take it)."""
    data = source(root)
    problems = []
    for role in roles_with_specs(root):
        entry = entry_of(role)
        options = ((load(spec_path(root, role)).get("argument_specs") or {}).get(entry) or {}).get("options") or {}
        wanted = shared_names(data, role)
        for name in wanted:
            if name not in options:
                problems.append("%s (%s): shared option %s is missing" % (role, entry, name))
                continue
            defined, listed = data["options"][name], options[name] or {}
            for key in COMPARED:
                if defined.get(key) != listed.get(key):
                    problems.append("%s (%s): %s.%s is %r, the definition says %r"
                                    % (role, entry, name, key, listed.get(key), defined.get(key)))
        for name in sorted(set(options) & set(data["options"]) - set(wanted)):
            problems.append("%s (%s): lists shared option %s, which the role does not take" % (role, entry, name))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale()
        for path in paths:
            print("%s: not what scripts/role_specs.py writes (run it)" % path.relative_to(ROOT))
        return 1 if paths else 0
    for path, text in sorted(expected_files().items()):
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print("wrote %s" % path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
