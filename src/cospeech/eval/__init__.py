"""cospeech.eval"""
