"""Video analysis: upload, segment-parallel processing on workers, results (issue: video analysis)."""
