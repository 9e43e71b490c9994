"""rosbag2 bags, ROS-free (pure `rosbags`): the one reader (reader.py), the topic mapping
(mapping.py), message fields and images (fields.py), timed streams (streams.py), their alignment to
steps (align.py; /tf state: tf.py), conversion into episodes (convert.py), and the recorder's own
episode bags: layout (layout.py), writer (writer.py), recover/info/dump (episode.py).

The names most callers need are importable from here."""
from lara_policy.common.errors import ConvertError  # noqa: F401
from lara_policy.formats.rosbag.align import idle_mask, trim_range  # noqa: F401
from lara_policy.formats.rosbag.convert import (BagEpisode, bag_episodes, convert_bags,  # noqa: F401
                                                resolve_mapping)
from lara_policy.formats.rosbag.episode import bag_info, read_episode, recover  # noqa: F401
from lara_policy.formats.rosbag.layout import (META_NAME, SEGMENTS_DIR, BagError, dump_yaml,  # noqa: F401
                                               is_recorder_episode, load_yaml, merge_segment_metadata)
from lara_policy.formats.rosbag.mapping import (Mapping, load_mapping, parse_mapping, policy_mapping,  # noqa: F401
                                                recorder_mapping, yaml_error_line)
from lara_policy.formats.rosbag.reader import (OpenBag, bag_topics, expand_sources, is_rosbag,  # noqa: F401
                                               iter_messages, typestore_for)
from lara_policy.formats.rosbag.streams import Streams, read_streams  # noqa: F401
from lara_policy.formats.rosbag.writer import EpisodeBagWriter, writer_typestore  # noqa: F401
