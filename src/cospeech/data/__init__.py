"""cospeech.data"""
