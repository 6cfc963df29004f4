"""Web serving (chat API, widget, Rasa channel) and the command line."""
