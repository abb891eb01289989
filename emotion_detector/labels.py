"""Label names shared by training, the model server and the web app (DESIGN.md §2)."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GENDERS: tuple[str, ...] = ("female", "male")
