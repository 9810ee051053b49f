"""WordNet 3.0 from /usr/share/wordnet through NLTK, with tagmill's packaged lexnames file."""

from __future__ import annotations

import os
from importlib import resources

import pytest

from tagmill.wordnet import REQUIRED_FILES, load_wordnet

WORDNET_DIR = "/usr/share/wordnet"

needs_wordnet = pytest.mark.skipif(
    not os.path.isdir(WORDNET_DIR),
    reason=f"{WORDNET_DIR} is absent: apt-get install wordnet-base wordnet-sense-index")


@pytest.fixture(scope="module")
def wn():
    return load_wordnet(WORDNET_DIR)


def test_packaged_lexnames_is_wordnets_45_line_file():
    text = resources.files("tagmill").joinpath("lexnames.txt").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()]
    assert len(rows) == 45
    assert all(len(row) == 3 for row in rows)
    assert [row[0] for row in rows] == [f"{i:02d}" for i in range(45)]
    assert rows[0] == ["00", "adj.all", "3"]
    assert rows[2] == ["02", "adv.all", "4"]
    assert rows[3] == ["03", "noun.Tops", "1"]
    assert rows[6] == ["06", "noun.artifact", "1"]
    assert rows[28] == ["28", "noun.time", "1"]
    assert rows[29] == ["29", "verb.body", "2"]
    assert rows[44] == ["44", "adj.ppl", "3"]
    category = {"noun": "1", "verb": "2", "adj": "3", "adv": "4"}
    assert all(row[2] == category[row[1].split(".")[0]] for row in rows)


@needs_wordnet
def test_reader_loads_wordnet_30_once_per_folder(wn):
    assert wn.get_version() == "3.0"
    assert load_wordnet(WORDNET_DIR) is wn
    assert load_wordnet(WORDNET_DIR + "/") is wn


@needs_wordnet
def test_sofa_synset_and_its_lexname(wn):
    synsets = wn.synsets("sofa", "n")
    assert [s.name() for s in synsets] == ["sofa.n.01"]
    assert [lemma.name() for lemma in synsets[0].lemmas()] == ["sofa", "couch", "lounge"]
    assert synsets[0].lexname() == "noun.artifact"  # read through the packaged lexnames file


@needs_wordnet
def test_cellphone_and_mobile_phone_share_a_synset(wn):
    expected = ["cellular_telephone.n.01"]
    assert [s.name() for s in wn.synsets("cellphone", "n")] == expected
    assert [s.name() for s in wn.synsets("mobile_phone", "n")] == expected
    assert [s.name() for s in wn.synsets("cellular_phone", "n")] == expected
    assert [lemma.name() for lemma in wn.synset("cellular_telephone.n.01").lemmas()] == [
        "cellular_telephone", "cellular_phone", "cellphone", "cell", "mobile_phone"]
    # WordNet 3.0 has no "cell_phone" lemma: the two-word query only reaches the synset through "cellphone".
    assert wn.synsets("cell_phone", "n") == []


@needs_wordnet
def test_morphy(wn):
    assert wn.morphy("sofas", "n") == "sofa"
    assert wn.morphy("boxes", "n") == "box"
    assert wn.morphy("women", "n") == "woman"
    assert wn.morphy("glasses", "n") == "glasses"
    assert wn.morphy("iphones", "n") is None


@needs_wordnet
def test_lemma_from_key_reads_index_sense(wn):
    lemma = wn.lemma_from_key("sofa%1:06:00::")
    assert lemma.name() == "sofa"
    assert lemma.synset().name() == "sofa.n.01"
    assert wn.lemma("sofa.n.01.couch").key() == "couch%1:06:00::"


def test_missing_folder_names_it_and_the_install_command(tmp_path):
    missing = tmp_path / "no-wordnet"
    with pytest.raises(FileNotFoundError) as err:
        load_wordnet(str(missing))
    message = str(err.value)
    assert str(missing) in message
    assert "apt-get install wordnet-base wordnet-sense-index" in message
    assert "text.wordnet_dir" in message


def test_missing_file_names_each_missing_path(tmp_path):
    for name in REQUIRED_FILES:
        if name != "index.sense":
            (tmp_path / name).write_text("")
    with pytest.raises(FileNotFoundError) as err:
        load_wordnet(str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "index.sense") in message
    assert str(tmp_path / "index.noun") not in message
    assert "apt-get install wordnet-base wordnet-sense-index" in message


def test_required_files_are_what_nltk_opens_less_lexnames():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    assert set(REQUIRED_FILES) == set(WordNetCorpusReader._FILES) - {"lexnames"}
