"""LeRobotDataset v3.0 in and out: the episode store <-> a LeRobot v3 dataset directory.

The v3 layout (LeRobot's `codebase_version` "v3.0"; docs/lerobot_v3.md has the mapping):

    DIR/meta/info.json                                   fps, features, path templates, counts
    DIR/meta/tasks.parquet                               task (text, the pandas index), task_index
    DIR/meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks,
                                                         data/ and videos/<key>/ chunk+file indices,
                                                         dataset_from/to_index, from/to_timestamp,
                                                         stats/<feature>/<stat>
    DIR/meta/stats.json                                  dataset statistics per feature
    DIR/data/chunk-XXX/file-YYY.parquet                  one row per frame (several episodes a file)
    DIR/videos/<key>/chunk-XXX/file-YYY.mp4              several episodes back to back per file
    DIR/meta/lara.json                                   (ours; LeRobot ignores it) what v3 has no
                                                         field for: task ids, seeds, success, ...

Writing (writer.py): `write_lerobot(store, DIR)`. Reading (reader.py): `LeRobotV3Source(DIR)` has the read API of
`EpisodeStore` (`.meta`, `len`, `episode(i)`, iteration over `Episode`, `episode_attrs`, `tasks`,
`summary`, `used_seeds`, context manager), so training reads a v3 directory directly
(`store.open_episode_source`); `read_lerobot(DIR, STORE.hdf5)` converts it into a store.
Only pyarrow and PyAV are needed (LeRobot itself cannot share this venv: it pins torch < 2.8).
"""
from lara_policy.formats.lerobot.layout import (ACTION_KEY, CODEBASE_VERSION, IMAGE_PREFIX, SIDECAR,  # noqa: F401
                                               STATE_KEY, SUCCESS_KEY, VCODECS, LeRobotError, camera_key,
                                               detect, is_lerobot_dir)
from lara_policy.formats.lerobot.reader import LeRobotV3Source, read_lerobot  # noqa: F401
from lara_policy.formats.lerobot.video import video_info  # noqa: F401
from lara_policy.formats.lerobot.writer import write_episodes, write_lerobot  # noqa: F401
