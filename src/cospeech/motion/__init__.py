"""cospeech.motion"""
