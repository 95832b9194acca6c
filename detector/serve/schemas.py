"""The API's contract as Pydantic models (what ``/docs`` shows), built from a
:class:`~detector.results.FrameResult`'s own ``records``: the JSON-lines contract, with
each face's probabilities ordered most likely first."""

from __future__ import annotations

from pydantic import BaseModel, Field

from detector.results import FrameResult


def most_likely_first(probs: dict[str, float]) -> dict[str, float]:
    """The same class -> probability mapping, in falling order of probability."""
    return dict(sorted(probs.items(), key=lambda item: -item[1]))


class FaceOut(BaseModel):
    box: list[int] = Field(description="x, y, w, h in the upright picture's pixels", min_length=4, max_length=4)
    label: str = Field(description="the most likely class")
    score: float = Field(description="its probability")
    probs: dict[str, float] = Field(description="every class, most likely first; sums to 1")
    keypoints: list[list[float]] | None = Field(
        default=None, description="with --detector blazeface: six [x, y] points in the picture's pixels: right eye, left "
                                  "eye (the person's), nose tip, mouth, right ear, left ear; null for Haar")


class PredictOut(BaseModel):
    width: int
    height: int
    faces: list[FaceOut] = Field(description="largest first")


class FacePredictions(BaseModel):
    predictions: dict[str, float] = Field(description="the largest face's classes, most likely first")


class StreamFace(FaceOut):
    id: int = Field(description="stays with the face across this connection's frames; a face-sized picture "
                                "classified whole is one face too, with an id of its own")
    raw_probs: dict[str, float] = Field(description="this frame alone, before smoothing; probs are smoothed over time")


class StreamFrame(BaseModel):
    """One ``/ws`` answer per binary frame received."""

    frame: int = Field(description="frames of this connection, from 0")
    time: float = Field(description="seconds since the connection opened")
    width: int
    height: int
    faces: list[StreamFace]
    timings: dict[str, float] = Field(description="milliseconds per stage: decode, detect (faces with their ids), whole_image "
                                                "(a face-sized picture without a detected face is classified whole), "
                                                "classify, smooth, total")


class ModelInfo(BaseModel):
    labels: list[str]
    input_size: list[int] = Field(description="width, height the model takes")
    channels: int
    backend: str
    model_file: str = Field(description="file name only; the server never shows its folders")
    outputs: str | None = Field(description="probabilities or logits, as the model card declares; null: undeclared")
    tta: str | None = Field(description="test-time augmentation baked into the model: flip, or null")
    arch: str | None = Field(description="the architecture's name, where the card says")
    members: int = Field(description="networks averaged in the model (an ensemble: more than 1)")
    calibration: dict | None = Field(description="how the scores were calibrated (method, temperature, fitted_on); null: not calibrated")


class Health(BaseModel):
    status: str = "ok"


class ErrorOut(BaseModel):
    detail: str


def faces_out(result: FrameResult) -> list[FaceOut]:
    """One-shot faces: the records without ids or raw probabilities."""
    return [FaceOut(box=r["box"], label=r["label"], score=r["score"], probs=most_likely_first(r["probs"]),
                    keypoints=r.get("keypoints")) for r in result.records]


def stream_frame(result: FrameResult, decode_ms: float) -> StreamFrame:
    """A frame of a stream, its faces with ids and smoothed; ``raw_probs`` equal ``probs`` where
    smoothing changed nothing. Every face has an id: the face finder's, or the whole-image stage's."""
    faces = [StreamFace(box=r["box"], id=r["id"], label=r["label"], score=r["score"], probs=most_likely_first(r["probs"]),
                        raw_probs=most_likely_first(r.get("raw_probs", r["probs"])), keypoints=r.get("keypoints"))
             for r in result.records]
    timings = {"decode": round(decode_ms, 2), **{k: round(v, 2) for k, v in result.timings.items()}}
    height, width = result.image.shape[:2]
    return StreamFrame(frame=result.index, time=round(result.time, 4), width=width, height=height, faces=faces, timings=timings)
