"""cospeech.serve"""
