"""cospeech.attention"""
