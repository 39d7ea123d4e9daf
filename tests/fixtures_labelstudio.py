"""A real Label Studio server for the review tests, and review inputs built from real licence texts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from semanticseg.candidates import find_candidates
from semanticseg.io import write_records
from semanticseg.schema import Candidates, Consensus, Document
from semanticseg.tokens import count_tokens

LICENCES = Path("/usr/share/common-licenses")
REVIEW_DOCS = ("GPL-3", "Apache-2.0", "MPL-2.0")  # real long texts shipped by Debian's base-files


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def labelstudio_dir(tmp_path_factory) -> Path:
    """The data dir of the session's Label Studio (its credentials.json and server.json live there)."""
    return tmp_path_factory.mktemp("labelstudio")


@pytest.fixture(scope="session")
def labelstudio(labelstudio_dir):
    """Credentials of a real Label Studio started once for the session (installed by scripts/install_labelstudio.sh)."""
    from semanticseg.servers import labelstudio_server

    creds, _ = labelstudio_server.serve(labelstudio_dir, port=_free_port(), timeout_s=420)
    yield creds
    labelstudio_server.stop(labelstudio_dir)


def join_as_reviewer(url: str, admin, email: str, password: str) -> str:
    """Sign a second reviewer up through the organisation's invite link, as a team member does in the
    browser, and return their own API token."""
    import httpx

    invite = admin.organizations.invites.get_invite_link().invite_url
    with httpx.Client(base_url=url) as browser:
        browser.get(invite)  # sets the CSRF cookie the signup form needs
        form = {"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        signup = browser.post(invite, data=form, headers={"Referer": url + invite})
        assert signup.status_code == 302, signup.text[:500]
        return browser.get("/api/current-user/token").raise_for_status().json()["token"]


def _consensus(doc: Document, cands: Candidates, disputed: bool) -> Consensus:
    """Two annotators that agree on every 6th candidate and disagree on a few others (when disputed)."""
    offsets = cands.offsets
    shared = offsets[::6]
    extra = [offsets[i] for i in (3, len(offsets) // 2 + 1)] if disputed else []
    structure = sorted(set(shared) | set(extra))
    llm = sorted(set(shared))
    return Consensus(
        doc_id=doc.id,
        cuts=llm,
        agreement=0.6 if disputed else 1.0,
        annotators=["structure", "llm:smollm2"],
        annotator_cuts=[structure, llm],
        disputed=disputed,
        disputed_offsets=extra,
    )


def make_review_inputs(work_dir: Path, disputed: tuple[bool, ...] = (True, True, False)) -> list[Consensus]:
    """documents/candidates/consensus/disputed parquet files for licence texts, as the stages write them."""
    docs, cands, consensus = [], [], []
    for name, is_disputed in zip(REVIEW_DOCS, disputed):
        text = (LICENCES / name).read_text()
        doc = Document(id=name.lower(), category="legal", source=str(LICENCES / name), licence=name,
                       text=text, n_chars=len(text), n_tokens=count_tokens(text))
        found = find_candidates(doc.id, text, doc.category)
        docs.append(doc)
        cands.append(found)
        consensus.append(_consensus(doc, found, is_disputed))
    write_records(work_dir / "documents.parquet", docs, Document)
    write_records(work_dir / "candidates.parquet", cands, Candidates)
    write_records(work_dir / "consensus.parquet", consensus, Consensus)
    write_records(work_dir / "disputed.parquet", [c for c in consensus if c.disputed], Consensus)
    return consensus


@pytest.fixture
def review_dir(tmp_path) -> Path:
    """A category work dir (legal) holding two disputed documents and one agreed one."""
    work_dir = tmp_path / "legal"
    make_review_inputs(work_dir)
    return work_dir
