"""Media I/O shared by every stage: mp4 (H.264 + AAC) writing and reading through PyAV."""
