// Colours and sizes of the KakaoTalk-like look, in one place.
pragma Singleton
import QtQuick 2.15

QtObject {
    readonly property color yellow: "#FEE500"
    readonly property color yellowPressed: "#F0D800"
    readonly property color brown: "#3C1E1E"
    readonly property color ink: "#191919"
    readonly property color subtle: "#8E8E8E"
    readonly property color faint: "#B8B8B8"
    readonly property color line: "#E8E8E8"
    readonly property color panel: "#FFFFFF"
    readonly property color nav: "#ECECED"
    readonly property color selected: "#F2F2F2"
    readonly property color chatBackground: "#BACEE0"
    readonly property color otherBubble: "#FFFFFF"
    readonly property color ownBubble: "#FEE500"
    readonly property color badge: "#FF4B2B"
    readonly property color counter: "#E5B800"
    readonly property color online: "#2FBE5F"
    readonly property color warning: "#F59F00"
    readonly property color error: "#E03131"
    readonly property int radius: 12
    readonly property int avatar: 40
    readonly property int fontSmall: 11
    readonly property int fontNormal: 14
    readonly property int fontLarge: 17
}
