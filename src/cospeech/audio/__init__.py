"""cospeech.audio"""
