"""The transfer set: unlabelled sentences drawn from another data set, never ones the prepared splits hold."""

import json

import pandas as pd
import pytest

from prunequant.errors import PrunequantError
from prunequant.transfer import build_transfer, normalise, split_sentences

from .conftest import invoke_stage, make_workspace, tiny_frame


def test_texts_split_into_sentences_at_end_marks_and_html_breaks():
    assert split_sentences("A fine film. Was it?<br /><br />Yes!  It   was.") == [
        "A fine film.", "Was it?", "Yes!", "It was."]
    assert split_sentences("no end mark here") == ["no end mark here"]
    assert split_sentences("  ") == []


def test_sentences_compare_without_case_spacing_or_punctuation():
    # Rotten Tomatoes is lower case with tokens split off ("it 's"); IMDb reviews are not.
    assert normalise("It's a GOOD film!") == normalise("it 's a good film") == "it s a good film"


def prepared(train_texts, validation_texts=("a held out validation sentence here",), test_texts=("x",)):
    def frame(texts):
        return pd.DataFrame({"text": list(texts), "label": [i % 2 for i in range(len(texts))]})

    return {"train": frame(train_texts), "validation": frame(validation_texts), "test": frame(test_texts)}


TRAIN = [f"the film number {i} was good" + " really" * (i % 5) for i in range(20)]  # transfer sentences: 6-10 words


def source_file(tmp_path, reviews):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": reviews, "label": 0}).to_csv(path, index=False)
    return str(path)


def test_no_sentence_of_the_validation_or_test_split_ever_enters_the_transfer_set(tmp_path):
    splits = prepared(TRAIN, validation_texts=["it 's so dull and boring"],
                      test_texts=["first test sentence of six . second one it is six words"])
    reviews = [
        "It's so DULL and boring.<br />I loved the actors in it.",  # a validation sentence, written otherwise
        "I hated every minute of that. Second one it is six words!",  # a sentence of a test text
        "Another review of the film here. Too short.",
        "Another review of the film here.",  # the same sentence again: drawn once
    ]
    frame, summary = build_transfer(source_file(tmp_path, reviews), splits, samples=100, seed=0)
    assert frame["text"].tolist() == ["I loved the actors in it.", "I hated every minute of that.",
                                      "Another review of the film here."]
    assert summary["left_out_in_prepared_data"] == 2 and summary["left_out_length"] == 1  # "Too short." (2 words)
    assert summary["sentences"] == summary["candidates"] == 3 and summary["words"] == [6, 10]


def test_the_task_data_set_itself_gives_only_sentences_of_its_training_rows(tmp_path):
    """Naming the task's own data set as the transfer set leaves out every sentence of its test rows."""
    reviews = [f"Review {i} starts off like this. Then it goes on and on {i}." for i in range(30)]
    splits = prepared(TRAIN, validation_texts=reviews[:5], test_texts=reviews[5:10])
    frame, _ = build_transfer(source_file(tmp_path, reviews), splits, samples=1000, seed=0)
    held_out = {normalise(s) for text in reviews[:10] for s in split_sentences(text)}
    assert len(frame) == 40 and not set(frame["text"].map(normalise)) & held_out  # 2 sentences of 20 reviews


def test_the_sample_is_capped_and_seeded(tmp_path):
    reviews = [f"This is review sentence number {i}." for i in range(200)]
    name = source_file(tmp_path, reviews)
    first, summary = build_transfer(name, prepared(TRAIN), samples=50, seed=1)
    assert len(first) == 50 and summary["candidates"] == 200
    assert first.equals(build_transfer(name, prepared(TRAIN), samples=50, seed=1)[0])
    assert not first.equals(build_transfer(name, prepared(TRAIN), samples=50, seed=2)[0])


def test_none_is_an_empty_transfer_set():
    frame, summary = build_transfer(None, prepared(TRAIN), samples=10, seed=0)
    assert frame.empty and list(frame.columns) == ["text"] and summary == {"transfer": None, "sentences": 0}


@pytest.mark.parametrize(("name", "message"), [
    ("imbd", "refinetune.transfer: unknown data set 'imbd' (did you mean 'imdb'?)"),
    ("missing.csv", "refinetune.transfer: file 'missing.csv' not found"),
    ("glue/mrpc", "refinetune.transfer: 'glue/mrpc' is a sentence-pair data set"),
])
def test_a_bad_transfer_set_is_one_line_naming_the_param(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PrunequantError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        build_transfer(name, prepared(TRAIN), samples=10, seed=0)


def test_a_file_without_a_text_column_and_a_pair_task_are_refused(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"review": ["a b c d e f."], "label": [0]}).to_csv(path, index=False)
    with pytest.raises(PrunequantError, match="has no 'text' column"):
        build_transfer(str(path), prepared(TRAIN), samples=10, seed=0)
    pairs = {name: frame.assign(text_pair="b") for name, frame in prepared(TRAIN).items()}
    with pytest.raises(PrunequantError, match="the task's data are sentence pairs"):
        build_transfer(source_file(tmp_path, ["x y z."]), pairs, samples=10, seed=0)


def test_the_stage_writes_the_sentences_and_their_counts(tmp_path, tiny_model_dir):
    reviews = [f"the plot {i} dragged. the film {i} shone." for i in range(60)]  # as long as the training rows
    workspace = make_workspace(tmp_path, tiny_model_dir, {
        "base": {"model": "tiny", "data": "data.csv"},
        "refinetune": {"transfer": "reviews.csv", "transfer_samples": 25}})
    pd.DataFrame({"text": reviews}).to_csv(workspace / "reviews.csv", index=False)
    assert invoke_stage(workspace, "prepare", "--out", "data", "--metrics", "prepare.json").exit_code == 0
    result = invoke_stage(workspace, "transfer", "--data", "data", "--out", "transfer.parquet",
                          "--metrics", "transfer.json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "transfer: 25 sentences from reviews.csv -> transfer.parquet"
    frame = pd.read_parquet(workspace / "transfer.parquet")
    assert len(frame) == 25 and frame["text"].str.fullmatch(r"the (plot \d+ dragged|film \d+ shone)\.").all()
    assert json.loads((workspace / "transfer.json").read_text())["sentences"] == 25
    assert not set(frame["text"].map(normalise)) & set(tiny_frame(40)["text"].map(normalise))

