"""Recording service: mono/dual WAV + MP3 from the two call legs."""
