"""SkyReels V3 (Skywork): reference-to-video, video extension and talking avatar, all on the Wan 2.1 14B DiT."""
