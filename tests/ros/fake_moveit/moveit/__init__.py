"""TEST-ONLY FAKE of MoveIt 2's moveit_py package (`moveit`), never the real one. Put
tests/ros/fake_moveit on PYTHONPATH of a process to give it this module. Importing it records
the importing process id (FAKE_MOVEIT_LOG), so a test can prove which process loaded moveit_py."""
import os

from ._log import event

event("import", pid=os.getpid())
