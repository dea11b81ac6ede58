"""Reference lists for the demo population: names, places, phone prefixes, email domains.

Every string here must be encodable in cp1252 (the support desk's encoding). Names are single
tokens (double names are hyphenated) so that "last name" is unambiguous in every silo.
"""

from __future__ import annotations

from typing import NamedTuple

FIRST_NAMES_FEMALE: tuple[str, ...] = (
    "Anna", "Maria", "Sophie", "Laura", "Julia", "Lena", "Lea", "Hannah", "Emma", "Mia",
    "Sarah", "Lisa", "Katharina", "Johanna", "Clara", "Marie", "Charlotte", "Ida", "Greta",
    "Frieda", "Paula", "Luisa", "Sabine", "Petra", "Andrea", "Claudia", "Susanne", "Monika",
    "Birgit", "Karin", "Ursula", "Renate", "Heike", "Nicole", "Stefanie", "Christina", "Kerstin",
    "Martina", "Tanja", "Anja", "Jana", "Nina", "Verena", "Theresa", "Magdalena", "Elisabeth",
    "Brigitte", "Ingrid", "Gisela", "Helga", "Jutta", "Bärbel", "Chloé",
    "Zoë", "Renée", "Anna-Lena", "Marlene", "Vanessa", "Jessica", "Melanie", "Daniela",
    "Franziska", "Carolin", "Svenja", "Annika", "Miriam", "Nathalie", "Corinne", "Séverine",
    "Noémie", "Leonie", "Antonia", "Valentina", "Selina", "Ayse", "Elif", "Fatma", "Natalia",
)
FIRST_NAMES_MALE: tuple[str, ...] = (
    "Thomas", "Michael", "Andreas", "Stefan", "Christian", "Markus", "Peter", "Wolfgang",
    "Klaus", "Jürgen", "Frank", "Uwe", "Bernd", "Matthias", "Alexander", "Martin", "Tobias",
    "Daniel", "Sebastian", "Florian", "Jan", "Lukas", "Felix", "Jonas", "Leon", "Paul", "Max",
    "Elias", "Noah", "Ben", "Finn", "Luca", "David", "Simon", "Philipp", "Julian", "Moritz",
    "Niklas", "Fabian", "Dominik", "Patrick", "Sven", "Jörg", "Dieter", "Helmut", "Günter",
    "Horst", "Manfred", "Werner", "Gerhard", "Heinz", "Rainer", "Ralf", "Holger", "Dirk",
    "Torsten", "René", "José", "André", "Cédric", "Loïc", "Jérôme", "Mehmet", "Mustafa",
    "Ahmet", "Emre", "Marco", "Luigi", "Reto", "Urs", "Beat", "Flurin", "Jakob", "Valentin",
    "Konstantin", "Maximilian", "Ferdinand", "Benedikt", "Severin", "Quirin",
)

# Ordered by frequency: the population draws them with Zipf-like weights, so common names
# (and therefore same-name strangers) are as frequent as in the real DACH region.
LAST_NAMES: tuple[str, ...] = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt",
    "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler",
    "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang",
    "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich", "Keller",
    "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke",
    "Albrecht", "Schuster", "Simon", "Ludwig", "Böhm", "Winter", "Kraus", "Martin", "Schumacher",
    "Krämer", "Vogt", "Stein", "Jäger", "Otto", "Sommer", "Groß", "Seidel", "Heinrich", "Brandt",
    "Haas", "Schreiber", "Graf", "Schulte", "Dietrich", "Ziegler", "Kuhn", "Kühn", "Pohl",
    "Engel", "Horn", "Busch", "Bergmann", "Thomas", "Voigt", "Sauer", "Arnold", "Wolff",
    "Pfeiffer", "Gruber", "Pichler", "Steiner", "Moser", "Mayr", "Hofer", "Leitner",
    "Fuchsberger", "Eder", "Wimmer", "Egger", "Brunner", "Lechner", "Haider", "Schwarzl",
    "Gasser", "Baumgartner", "Frei", "Keller-Sutter", "Meili", "Brun", "Gerber", "Widmer",
    "Zürcher", "Bachmann", "Sutter", "Kälin", "Ammann", "Wyss", "Rüegg", "Marti", "Bühler",
    "Lüthi", "Aebischer", "Ferrari", "Rossi", "Bianchi", "Yilmaz", "Kaya", "Demir", "Sahin",
    "Çelik", "Öztürk", "Nowak", "Kowalski", "Lewandowski", "Wisniewski", "Dubois", "Girard",
    "Lefèvre", "Müller-Lüdenscheidt", "Schmidt-Weber", "Hoffmann-Krause", "Abt", "Adler",
    "Ahrens", "Arndt", "Barth", "Bartels", "Behrens", "Bender", "Blum", "Bock", "Brinkmann",
    "Buchholz", "Dörr", "Ebert", "Ernst", "Falk", "Fiedler", "Fink", "Förster", "Frey", "Geiger",
    "Göbel", "Götz", "Hansen", "Heinz", "Hermann", "Hübner", "Jansen", "Kern", "Kirchner",
    "Kolb", "Kopp", "Kremer", "Kuhlmann", "Langer", "Lindner", "Marx", "Mertens", "Michel",
    "Nagel", "Naumann", "Noack", "Oswald", "Paul", "Petersen", "Popp", "Reuter", "Ritter",
    "Rose", "Sander", "Schilling", "Schmitz-Ott", "Schütz", "Seifert", "Stahl", "Thiel",
    "Ullrich", "Voß", "Wendt", "Wilhelm", "Witt", "Wittmann", "Zimmer",
)

STREETS_DACH: tuple[str, ...] = (
    "Hauptstraße", "Bahnhofstraße", "Schulstraße", "Gartenstraße", "Dorfstraße", "Bergstraße",
    "Kirchstraße", "Lindenstraße", "Waldstraße", "Ringstraße", "Mühlenweg", "Birkenweg",
    "Wiesenweg", "Am Markt", "Marktplatz", "Goethestraße", "Schillerstraße", "Mozartstraße",
    "Beethovenstraße", "Friedhofstraße", "Feldstraße", "Rosenweg", "Ahornweg", "Parkstraße",
    "Brunnengasse", "Poststraße", "Industriestraße", "Talstraße", "Sonnenweg", "Eichenweg",
    "Kastanienallee", "Blumenstraße", "Lessingstraße", "Uhlandstraße", "Am Bach", "Am Hang",
    "Neue Straße", "Alte Landstraße", "Mittelweg", "Kanalstraße",
)
STREETS_AT: tuple[str, ...] = (
    "Hauptstraße", "Bahnhofstraße", "Herrengasse", "Kirchengasse", "Schulgasse", "Mariahilfer Straße",
    "Landstraßer Hauptstraße", "Josefstädter Straße", "Linzer Gasse", "Sporgasse", "Am Anger",
    "Lindengasse", "Gartengasse", "Feldgasse", "Wiener Straße",
)
STREETS_CH: tuple[str, ...] = (
    "Bahnhofstrasse", "Hauptstrasse", "Dorfstrasse", "Kirchgasse", "Seestrasse", "Schulhausstrasse",
    "Oberdorfstrasse", "Rue du Rhône", "Avenue de la Gare", "Rue de Lausanne", "Marktgasse",
    "Kramgasse", "Limmatquai", "Zürichstrasse", "Bernstrasse",
)


class City(NamedTuple):
    """A service-area town: its postal code range (inclusive), phone area code and weight."""

    country: str  # ISO-2
    name: str
    postal_low: int
    postal_high: int
    area_code: str  # national, without the leading 0
    weight: float


CITIES: tuple[City, ...] = (
    City("DE", "Berlin", 10115, 14199, "30", 36.0),
    City("DE", "Hamburg", 20095, 22769, "40", 18.0),
    City("DE", "München", 80331, 81929, "89", 15.0),
    City("DE", "Köln", 50667, 51149, "221", 11.0),
    City("DE", "Frankfurt am Main", 60306, 60599, "69", 7.5),
    City("DE", "Stuttgart", 70173, 70629, "711", 6.3),
    City("DE", "Düsseldorf", 40210, 40629, "211", 6.2),
    City("DE", "Leipzig", 4103, 4357, "341", 6.0),
    City("DE", "Dortmund", 44135, 44388, "231", 5.9),
    City("DE", "Essen", 45127, 45359, "201", 5.8),
    City("DE", "Bremen", 28195, 28779, "421", 5.6),
    City("DE", "Dresden", 1067, 1328, "351", 5.5),
    City("DE", "Hannover", 30159, 30669, "511", 5.3),
    City("DE", "Nürnberg", 90402, 90491, "911", 5.1),
    City("DE", "Göttingen", 37073, 37085, "551", 1.2),
    City("DE", "Würzburg", 97070, 97084, "931", 1.3),
    City("DE", "Lübeck", 23552, 23570, "451", 2.1),
    City("DE", "Saarbrücken", 66111, 66133, "681", 1.8),
    City("AT", "Wien", 1010, 1230, "1", 19.0),
    City("AT", "Graz", 8010, 8054, "316", 2.9),
    City("AT", "Linz", 4020, 4040, "732", 2.0),
    City("AT", "Salzburg", 5020, 5026, "662", 1.5),
    City("AT", "Innsbruck", 6020, 6080, "512", 1.3),
    City("AT", "Klagenfurt", 9020, 9073, "463", 1.0),
    City("CH", "Zürich", 8001, 8064, "44", 4.2),
    City("CH", "Genève", 1201, 1228, "22", 2.0),
    City("CH", "Basel", 4001, 4059, "61", 1.8),
    City("CH", "Bern", 3001, 3030, "31", 1.4),
    City("CH", "Lausanne", 1003, 1018, "21", 1.4),
    City("CH", "Winterthur", 8400, 8411, "52", 1.1),
    City("CH", "St. Gallen", 9000, 9016, "71", 0.8),
)

COUNTRY_CALLING_CODES: dict[str, str] = {"DE": "49", "AT": "43", "CH": "41"}
MOBILE_PREFIXES: dict[str, tuple[str, ...]] = {
    "DE": ("151", "152", "157", "160", "162", "163", "170", "171", "172", "173", "175", "176",
           "177", "178", "179"),
    "AT": ("650", "660", "664", "676", "677", "680", "699"),
    "CH": ("76", "77", "78", "79"),
}

EMAIL_DOMAINS: dict[str, tuple[str, ...]] = {
    "DE": ("gmx.de", "web.de", "t-online.de", "gmail.com", "outlook.de", "yahoo.de", "posteo.de",
           "freenet.de", "icloud.com", "mailbox.org"),
    "AT": ("gmx.at", "aon.at", "chello.at", "gmail.com", "outlook.com", "a1.net"),
    "CH": ("bluewin.ch", "gmx.ch", "gmail.com", "hispeed.ch", "sunrise.ch", "outlook.com"),
}
WORK_EMAIL_DOMAINS: tuple[str, ...] = (
    "stadtwerke-nord.de", "alpen-logistik.at", "kanzlei-berger.de", "praxis-am-park.de",
    "bauhof-ag.ch", "mediahaus-ost.de", "uni-beispiel.de", "klinikum-west.de",
    "software-werk.de", "handelshaus.at", "treuhand-meier.ch", "schule-online.de",
    "autohaus-krause.de", "druckerei-lang.de", "versicherung-sued.de",
)

#: Raw `country` texts the CRM holds for each ISO code; the dbt mapping keys on lower(trim()).
COUNTRY_TEXTS: dict[str, tuple[str, ...]] = {
    "DE": ("Germany", "germany ", "DE", "Deutschland", "GERMANY"),
    "AT": ("Austria", "AT", "Österreich", "austria "),
    "CH": ("Switzerland", "CH", "Schweiz", "Suisse"),
}
#: Texts the `bad_country` fault writes: none of them maps to DE/AT/CH.
BAD_COUNTRY_TEXTS: tuple[str, ...] = ("Atlantis", "Narnia", "??", "Utopia", "n.a.")
